"""The engine, the back-test and the simulator stay pure: `bench/bench_backtest.py`,
`bench/bench_mix.py` and the simulator run them without Django set up, so importing them must
not reach a Django model (a status type importing the Kubernetes adapter once broke `make
bench` while every test, run under pytest-django, still passed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_back_test_imports_without_django_settings():
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    run = subprocess.run(
        [sys.executable, "-c", "import scaling.backtest, scaling.engine, simulator.pool"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
