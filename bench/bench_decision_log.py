"""How many Decision rows the demo writes per workload-hour: the decision log people read.

The demo (``load_demo``: 2 clusters, 12 workloads with policies of every algorithm) runs
against the simulator's demo fleet (simulator/demo.json, Azure LLM inference traces 2023,
CC BY 4.0) at ``--speed`` times real time, and the control loop ticks each cluster every
``CONTROL_LOOP_INTERVAL`` (5 s) of simulated time, its clock injected (``tick_cluster(now=)``),
for ``--minutes`` simulated minutes. Reported: decisions written, per workload-hour, by
outcome, and how many are holds.

``--code PATH`` measures another checkout (e.g. a worktree of an older commit) the same way,
for before/after figures from one machine; its own database and simulator process.

Run: ``.venv/bin/python bench/bench_decision_log.py [--code PATH] [--minutes 10]``
"""

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--code", type=Path, default=HERE, help="checkout to measure")
parser.add_argument("--minutes", type=float, default=10.0, help="simulated minutes")
parser.add_argument("--speed", type=float, default=4.0, help="simulated s per wall s")
ARGS = parser.parse_args()
ROOT = ARGS.code.resolve()
sys.path.insert(0, str(ROOT))
sys.path.insert(1, str(HERE))  # bench.servers
os.chdir(ROOT)
VAR = Path(tempfile.mkdtemp(prefix="bench-decisions-"))
os.environ.update(VAR_DIR=str(VAR), DJANGO_SETTINGS_MODULE="controlplane.settings")
for name in ("DATABASE_URL", "REDIS_URL"):
    os.environ.pop(name, None)

from bench.servers import free_port, wait_http  # noqa: E402

PORT = free_port()
os.environ["SIMULATOR_PORT"] = str(PORT)
simulator = subprocess.Popen(
    [sys.executable, "-m", "simulator", "--port", str(PORT), "--speed", str(ARGS.speed)],
    cwd=ROOT,
    stdout=subprocess.DEVNULL,
    stderr=subprocess.DEVNULL,
)
wait_http(f"http://127.0.0.1:{PORT}/healthz", simulator)

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

call_command("migrate", verbosity=0)
call_command("load_demo", verbosity=0, stdout=io.StringIO())

from clusters.models import Cluster  # noqa: E402
from scaling.loop import tick_cluster  # noqa: E402
from scaling.models import Decision, Workload  # noqa: E402

INTERVAL = 5.0
try:
    clusters = list(Cluster.objects.filter(enabled=True).values_list("pk", flat=True))
    workloads = Workload.objects.count()
    start, ticks = time.time(), int(ARGS.minutes * 60 / INTERVAL)
    for k in range(ticks):
        now = start + k * INTERVAL
        for pk in clusters:
            tick_cluster(pk, now=now)
        # Keep the control plane's clock on the simulator's: one interval of simulated time.
        time.sleep(max(0.0, start + (k + 1) * INTERVAL / ARGS.speed - time.time()))
    outcomes = Counter(Decision.objects.values_list("outcome", flat=True))
    total = sum(outcomes.values())
    hours = workloads * ticks * INTERVAL / 3600
    result = {
        "code": str(ROOT),
        "simulated_minutes": ticks * INTERVAL / 60,
        "workloads": workloads,
        "decisions": total,
        "per_workload_hour": round(total / hours, 1),
        "outcomes": dict(outcomes),
        "holds": outcomes.get("held", 0),
    }
    print(json.dumps(result, indent=2))
finally:
    simulator.terminate()
    simulator.wait(timeout=10)
