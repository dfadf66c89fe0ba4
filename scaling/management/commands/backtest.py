"""``python manage.py backtest``: replay a trace through a scaling policy and print the result.

    python manage.py backtest --policy <id | file.json> --trace <file | conv | code>
        [--gpu-type A100-80GB] [--model NAME] [--gpus-per-replica N] [--cold-start S]
        [--slo-ttft S] [--slo-tpot S] [--tick S] [--start S] [--duration S]
        [--compare hpa,kpa,oracle] [--json]

A policy id loads the stored ScalingPolicy; its workload's GPU type, model and GPUs per
replica (and the policy's pool settings) are the defaults. A policy file is a JSON object with
the ScalingPolicy field names; omitted fields take the model's defaults, and it is validated
like the admin and API validate a policy. docs/backtest.md has the details.
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, TextIO

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from performance import PRODUCT_LABELS
from scaling.backtest import (
    DEFAULT_GPU_TYPE,
    DEFAULT_MODEL,
    BacktestResult,
    OracleResult,
    run_backtest,
)
from scaling.engine import ALGORITHMS, PolicyParams
from scaling.models import ScalingPolicy
from simulator.traces import NAMED_TRACES, TraceError, trace_path

AZURE_ATTRIBUTION = (
    '"Azure LLM inference trace 2023" by Microsoft Azure (Azure Public Dataset), CC BY 4.0 '
    "(https://creativecommons.org/licenses/by/4.0/); see simulator/traces/README.md"
)
# Read-only fields of the API's policy representation: accepted in a file and ignored.
API_ONLY_FIELDS = {"id", "url", "workload", "version", "updated_at", "mode"}
POLICY_FILE_FIELDS = {f.name for f in fields(PolicyParams)} | {"max_concurrency", "routing"}


class Command(BaseCommand):
    help = "Replay a request trace through a scaling policy on the simulator's virtual clock."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--policy", required=True, help="policy id or a JSON policy file")
        parser.add_argument("--trace", required=True, help="conv, code or a trace file path")
        parser.add_argument("--gpu-type", help=f"GPU profile (default {DEFAULT_GPU_TYPE})")
        parser.add_argument("--model", help=f"model (default {DEFAULT_MODEL})")
        parser.add_argument("--gpus-per-replica", type=int, help="default 1")
        parser.add_argument("--cold-start", type=float, help="seconds (default: the policy's)")
        parser.add_argument("--slo-ttft", type=float, default=2.0, help="seconds (default 2)")
        parser.add_argument(
            "--slo-tpot", type=float, default=0.1, help="mean inter-token s (default 0.1)"
        )
        parser.add_argument("--tick", type=float, default=5.0, help="decision interval s")
        parser.add_argument("--start", type=float, default=0.0, help="trace offset s")
        parser.add_argument("--duration", type=float, help="seconds of trace (default all)")
        parser.add_argument("--compare", default="", help="e.g. hpa,kpa,oracle")
        parser.add_argument("--json", action="store_true", help="machine-readable output only")

    def handle(self, *args: Any, **options: Any) -> None:
        policy, settings = load_policy(options["policy"])
        settings.update(
            {
                key: options[opt]
                for key, opt in (
                    ("gpu_type", "gpu_type"),
                    ("model", "model"),
                    ("gpus_per_replica", "gpus_per_replica"),
                    ("cold_start_s", "cold_start"),
                )
                if options[opt] is not None
            }
        )
        settings.update(
            slo_ttft_s=_positive(options["slo_ttft"], "--slo-ttft"),
            slo_tpot_s=_positive(options["slo_tpot"], "--slo-tpot"),
            tick_s=_positive(options["tick"], "--tick"),
            start_s=options["start"],
            duration_s=options["duration"],
        )
        compare = parse_compare(options["compare"])
        policies = [policy] + [
            _as_algorithm(policy, name, settings["slo_ttft_s"])
            for name in compare
            if name not in ("oracle", policy.algorithm)
        ]
        results = self._run_all(policies, options["trace"], settings)
        if options["json"]:
            self.stdout.write(json.dumps(_json(results), indent=2))
        else:
            self.stdout.write(render(results, options["trace"], show_oracle=True))

    def _run_all(
        self, policies: list[PolicyParams], trace: str, settings: dict[str, Any]
    ) -> list[BacktestResult]:
        bar = ProgressBar(sys.stderr, len(policies)) if sys.stderr.isatty() else None
        results: list[BacktestResult] = []
        oracle: bool | OracleResult = True
        for i, policy in enumerate(policies):
            progress = bar.for_run(i, policy.algorithm) if bar is not None else None
            try:
                result = run_backtest(policy, trace, oracle=oracle, progress=progress, **settings)
            except TraceError as exc:
                raise CommandError(f"--trace {trace}: {describe_trace_error(trace, exc)}") from exc
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
            oracle = result.oracle or False
            results.append(result)
        if bar is not None:
            bar.done()
        return results


def _positive(value: float, option: str) -> float:
    if not value > 0:
        raise CommandError(f"{option} must be a positive number of seconds")
    return value


def parse_compare(raw: str) -> list[str]:
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n != "oracle" and n not in ALGORITHMS]
    if unknown:
        known = ", ".join([*ALGORITHMS, "oracle"])
        raise CommandError(f"--compare: unknown {', '.join(unknown)} (known: {known})")
    return names


def _as_algorithm(policy: PolicyParams, name: str, slo_ttft_s: float) -> PolicyParams:
    """The same policy under another algorithm (slo gets the TTFT bound if it has none)."""
    changed = replace(policy, algorithm=name)
    if name == "slo" and changed.slo_ttft_p95_s is None:
        changed = replace(changed, slo_ttft_p95_s=slo_ttft_s)
    return changed


# --- policies ---------------------------------------------------------------------------------


def load_policy(ref: str) -> tuple[PolicyParams, dict[str, Any]]:
    """(policy, deployment settings) from a policy id or a JSON policy file."""
    if ref.isdigit():
        return _stored_policy(int(ref))
    return _policy_file(Path(ref))


def _stored_policy(pk: int) -> tuple[PolicyParams, dict[str, Any]]:
    stored = ScalingPolicy.objects.select_related("workload__gpu_type").filter(pk=pk).first()
    if stored is None:
        raise CommandError(f"--policy {pk}: no scaling policy with that id")
    workload = stored.workload
    gpu = workload.gpu_type
    settings: dict[str, Any] = {
        "gpu_type": PRODUCT_LABELS.get(gpu.node_label, gpu.name),
        "model": workload.model_name,
        "gpus_per_replica": workload.gpus_per_replica,
    }
    settings.update(_pool_settings(stored))
    return stored.engine_params(), settings


def _pool_settings(policy: ScalingPolicy) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if policy.max_concurrency:
        out["max_concurrency"] = policy.max_concurrency
    if policy.routing:
        out["routing"] = policy.routing
    return out


def _policy_file(path: Path) -> tuple[PolicyParams, dict[str, Any]]:
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise CommandError(f"--policy {path}: cannot read the file ({exc.strerror})") from exc
    except ValueError as exc:
        raise CommandError(f"--policy {path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise CommandError(f"--policy {path}: expected a JSON object of policy fields")
    unknown = sorted(set(data) - POLICY_FILE_FIELDS - API_ONLY_FIELDS)
    if unknown:
        raise CommandError(f"--policy {path}: unknown field(s) {', '.join(unknown)}")
    given = {k: v for k, v in data.items() if k in POLICY_FILE_FIELDS}
    try:
        policy = ScalingPolicy(**given)
        policy.full_clean(exclude=["workload"])
    except (ValidationError, TypeError, ValueError) as exc:
        raise CommandError(f"--policy {path}: {_describe(exc)}") from exc
    return policy.engine_params(), _pool_settings(policy)


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError) and hasattr(exc, "error_dict"):
        parts = []
        for name, messages in sorted(exc.message_dict.items()):
            text = " ".join(messages)
            name = "policy" if name == "__all__" else name
            if name == "target" and "null" in text:
                text = "required: a positive number"
            parts.append(f"{name}: {text}")
        return "; ".join(parts)
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return str(exc)


# --- traces -----------------------------------------------------------------------------------


def describe_trace_error(trace: str, exc: TraceError) -> str:
    """The parser's message, with the line number of a bad CSV row when it gave none."""
    message = str(exc)
    if "line" in message or trace in NAMED_TRACES:
        return message
    line = _bad_csv_line(trace_path(trace))
    return f"line {line}: {message}" if line is not None else message


def _bad_csv_line(path: Path) -> int | None:
    """The first line of an Azure CSV whose row does not parse (None if none is found)."""
    try:
        with path.open(newline="") as handle:
            reader = csv.DictReader(handle)
            for row in reader:
                try:
                    float(row["TIMESTAMP"].strip().split(" ")[1].split(":")[2])
                    int(row["ContextTokens"])
                    int(row["GeneratedTokens"])
                except (KeyError, ValueError, TypeError, IndexError, AttributeError):
                    return reader.line_num
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return None


# --- output -----------------------------------------------------------------------------------


class ProgressBar:
    """A one-line bar on a terminal: one segment per run."""

    WIDTH = 30

    def __init__(self, stream: TextIO, runs: int) -> None:
        self.stream, self.runs = stream, runs

    def for_run(self, index: int, label: str) -> Any:
        def show(done: float) -> None:
            overall = (index + min(max(done, 0.0), 1.0)) / self.runs
            filled = round(overall * self.WIDTH)
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            self.stream.write(f"\r{label:<11} [{bar}] {overall:4.0%}")
            self.stream.flush()

        return show

    def done(self) -> None:
        self.stream.write("\r" + " " * (self.WIDTH + 20) + "\r")
        self.stream.flush()


def _json(results: list[BacktestResult]) -> dict[str, Any]:
    oracle = results[0].oracle
    runs = []
    for r in results:
        data = r.to_dict()
        data.pop("oracle")
        runs.append(data)
    return {
        "results": runs,
        "oracle": oracle.to_dict() if oracle is not None else None,
        "attribution": AZURE_ATTRIBUTION if _is_azure(results[0].trace) else None,
    }


def _is_azure(name: str) -> bool:
    return name in {p.stem for p in NAMED_TRACES.values()}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f} %"


def _num(value: float | None, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def render(results: list[BacktestResult], trace: str, *, show_oracle: bool) -> str:
    """The human-readable report: a header and one row per algorithm (and the oracle)."""
    first = results[0]
    lines = [
        f"Back-test of {trace}: {first.requests:,} requests over {first.duration_s / 60:.1f} min "
        f"on {first.gpu_type} x{first.gpus_per_replica}, {first.model}, "
        f"cold start {first.cold_start_s:g} s, tick {first.tick_s:g} s",
        f"SLO: TTFT <= {first.slo_ttft_s:g} s and mean inter-token latency <= "
        f"{first.slo_tpot_s * 1000:g} ms; infeasible share {_pct(first.infeasible_share)} "
        "(could not meet it even on an idle replica; left out of the attainment)",
        "",
    ]
    header = (
        f"{'policy':<11} {'SLO att.':>9} {'TTFT p50/p95/p99 s':>20} {'GPU-h':>8} "
        f"{'x oracle':>8} {'mean/peak':>10} {'scale ev.':>9} {'GPU util':>8}"
    )
    lines += [header, "-" * len(header)]
    for r in results:
        ttft = f"{_num(r.ttft_p50_s)}/{_num(r.ttft_p95_s)}/{_num(r.ttft_p99_s)}"
        lines.append(
            f"{r.algorithm:<11} {_pct(r.slo_attainment):>9} {ttft:>20} {r.gpu_hours:>8.2f} "
            f"{_num(r.gpu_hours_vs_oracle):>8} {f'{r.mean_replicas:.1f}/{r.peak_replicas}':>10} "
            f"{r.scale_events:>9} {r.mean_gpu_util * 100:>7.0f}%"
        )
    oracle = first.oracle
    if show_oracle and oracle is not None:
        peak = f"{oracle.mean_replicas:.1f}/{oracle.peak_replicas}"
        lines.append(
            f"{'oracle':<11} {_pct(oracle.slo_attainment):>9} {'-':>20} {oracle.gpu_hours:>8.2f} "
            f"{'1.00':>8} {peak:>10} {oracle.scale_events:>9} {'-':>8}"
        )
        lines += [
            "",
            f"oracle: clairvoyant, per {oracle.window_s:g} s window the fewest replicas meeting "
            f"the SLO for {oracle.target_attainment:.0%} of its feasible requests, started one "
            "cold start ahead; no drain (docs/backtest.md)",
        ]
    if _is_azure(first.trace):
        lines.append(f"trace: {AZURE_ATTRIBUTION}")
    return "\n".join(lines)
