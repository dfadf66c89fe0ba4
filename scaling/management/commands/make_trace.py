"""``python manage.py make_trace``: write a synthetic trace, or fit a spec to a trace.

    python manage.py make_trace (--spec SPEC.json | --regime NAME) [--seed N]
        [--duration S] --out FILE
    python manage.py make_trace --fit TRACE [--out SPEC.json]
    python manage.py make_trace --list

The trace is JSON lines (``timestamp`` ms, ``input_length``, ``output_length``, and
``hash_ids`` when the spec has sessions), which ``backtest --trace FILE`` reads. Same spec and
seed, byte-identical file. ``--fit`` prints the fitted spec (or writes it to ``--out``).
docs/traces.md has the spec format and the regimes.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from simulator.tracefit import fit_spec
from simulator.tracegen import REGIMES, generate, load_spec, regime, write_trace
from simulator.traces import TraceError, load_trace
from simulator.tracespec import SpecError, TraceSpec, spec_to_dict


class Command(BaseCommand):
    help = (
        "Write a synthetic request trace from a spec or a named regime, or fit a spec to a trace."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--spec", help="a JSON trace spec (docs/traces.md)")
        source.add_argument("--regime", help=f"a named regime: {', '.join(REGIMES)}")
        source.add_argument(
            "--fit", metavar="TRACE", help="conv, code or a trace file: print a spec fitted to it"
        )
        source.add_argument("--list", action="store_true", help="list the regimes")
        parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        parser.add_argument("--duration", type=float, help="seconds (default: the spec's)")
        parser.add_argument("--out", help="the trace file to write (with --fit: the spec file)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["list"]:
            for name in REGIMES:
                self.stdout.write(f"{name}: {regime(name).description}")
            return
        if options["fit"]:
            self._fit(options["fit"], options["out"])
            return
        duration = options["duration"]
        if duration is not None and not 0 < duration < float("inf"):
            raise CommandError("--duration must be a positive number of seconds")
        if not options["out"]:
            raise CommandError("--out FILE is required to write a trace")
        out = Path(options["out"])
        if not out.parent.is_dir():
            raise CommandError(f"--out: no directory {out.parent}")
        spec = self._spec(options["spec"], options["regime"])
        requests = generate(spec, options["seed"], duration)
        try:
            write_trace(requests, out)
        except SpecError as exc:
            raise CommandError(str(exc)) from exc
        span = requests[-1].arrival_s if requests else 0.0
        self.stdout.write(
            f"wrote {len(requests)} requests over {span:.0f} s ({spec.name}, seed "
            f"{options['seed']}) to {out}"
        )

    def _spec(self, path: str | None, name: str | None) -> TraceSpec:
        try:
            return load_spec(path) if path else regime(str(name))
        except SpecError as exc:
            raise CommandError(f"bad spec: {exc}") from exc

    def _fit(self, trace: str, out: str | None) -> None:
        try:
            spec = fit_spec(load_trace(trace))
        except (TraceError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        text = json.dumps(spec_to_dict(spec), indent=2) + "\n"
        if out is None:
            self.stdout.write(text, ending="")
            return
        path = Path(out)
        if not path.parent.is_dir():
            raise CommandError(f"--out: no directory {path.parent}")
        handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(handle, "w") as f:
            f.write(text)
        os.replace(tmp, path)
        self.stdout.write(f"wrote the spec fitted to {trace} ({spec.description}) to {path}")
