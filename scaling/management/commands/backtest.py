"""``python manage.py backtest``: replay a trace through a scaling policy and print the result.

    python manage.py backtest --policy <id | file.json> --trace <file | conv | code>
        [--gpu-type A100-80GB] [--model NAME] [--gpus-per-replica N] [--cold-start S]
        [--slo-ttft S] [--slo-tpot S] [--tick S] [--start S] [--duration S]
        [--compare hpa,kpa,oracle] [--oracle-max-replicas N] [--price USD] [--progress]
        [--json]

A policy id loads the stored ScalingPolicy; its workload's GPU type, model and GPUs per
replica (and the policy's pool settings) are the defaults, and the GPU type's hourly cost
prices the result unless ``--price`` does (with neither, an assumed price per GPU type:
``scaling.backtest.deployment.ASSUMED_PRICE_USD_PER_GPU_HOUR``). A policy file is a JSON object with
the ScalingPolicy field names; omitted fields take the model's defaults, and it is validated
like the admin and API validate a policy. docs/backtest.md has the details.
"""

from __future__ import annotations

import csv
import json
from dataclasses import fields
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper

from scaling.backtest import DEFAULT_GPU_TYPE, DEFAULT_MODEL, BacktestResult, OracleResult, jobs
from scaling.backtest.replay import DEFAULT_TICK_S
from scaling.backtest.slo import DEFAULT_SLO_TPOT_S, DEFAULT_SLO_TTFT_S
from scaling.engine import ALGORITHMS, PolicyParams
from scaling.models import ScalingPolicy
from simulator.traces import NAMED_TRACES, TraceError, trace_path

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
        parser.add_argument(
            "--slo-ttft",
            type=float,
            default=DEFAULT_SLO_TTFT_S,
            help=f"seconds (default {DEFAULT_SLO_TTFT_S:g})",
        )
        parser.add_argument(
            "--slo-tpot",
            type=float,
            default=DEFAULT_SLO_TPOT_S,
            help=f"mean inter-token s (default {DEFAULT_SLO_TPOT_S:g})",
        )
        parser.add_argument(
            "--tick",
            type=float,
            default=DEFAULT_TICK_S,
            help=f"decision interval s (default {DEFAULT_TICK_S:g})",
        )
        parser.add_argument("--start", type=float, default=0.0, help="trace offset s")
        parser.add_argument("--duration", type=float, help="seconds of trace (default all)")
        parser.add_argument("--compare", default="", help="e.g. hpa,kpa,oracle")
        parser.add_argument(
            "--oracle-max-replicas",
            type=int,
            help="cap the oracle's replicas (default: none; the policy's max is not the oracle's)",
        )
        parser.add_argument(
            "--price",
            type=float,
            help="USD per GPU-hour (default: the GPU type's hourly cost, else an assumed price)",
        )
        parser.add_argument(
            "--progress",
            action="store_true",
            help="draw a progress bar on stderr even when it is not a terminal",
        )
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
        if options["oracle_max_replicas"] is not None:
            if options["oracle_max_replicas"] < 1:
                raise CommandError("--oracle-max-replicas must be at least 1")
            settings["oracle_ceiling"] = options["oracle_max_replicas"]
        if options["price"] is not None:
            if not 0 < options["price"] < float("inf"):
                raise CommandError("--price must be a positive number of USD per GPU-hour")
            settings[jobs.PRICE_KEY] = options["price"]
        runs = jobs.compared_runs(policy, parse_compare(options["compare"]), settings["slo_ttft_s"])
        show_bar = options["progress"] or self.stderr.isatty()
        results = _run(
            runs, options["trace"], settings, ProgressBar(self.stderr) if show_bar else None
        )
        if options["json"]:
            self.stdout.write(json.dumps(jobs.job_result(results), indent=2))
        else:
            self.stdout.write(render(results, options["trace"], show_oracle=True))


def _run(
    runs: list[PolicyParams], trace: str, settings: dict[str, Any], bar: ProgressBar | None
) -> list[BacktestResult]:
    """The job (``scaling.backtest.jobs``), with a progress bar when given one."""
    try:
        results = jobs.run_job(runs, trace, settings, progress=bar)
    except TraceError as exc:
        raise CommandError(f"--trace {trace}: {describe_trace_error(trace, exc)}") from exc
    except ValueError as exc:
        raise CommandError(str(exc)) from exc
    if bar is not None:
        bar.done()
    return results


def _positive(value: float, option: str) -> float:
    if not value > 0:
        raise CommandError(f"{option} must be a positive number of seconds")
    return value


def parse_compare(raw: str) -> list[str]:
    names = [n.strip() for n in raw.split(",") if n.strip()]
    unknown = [n for n in names if n != jobs.ORACLE and n not in ALGORITHMS]
    if unknown:
        known = ", ".join([*ALGORITHMS, jobs.ORACLE])
        raise CommandError(f"--compare: unknown {', '.join(unknown)} (known: {known})")
    return names


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
    # The duration is the command's (--duration), set by handle().
    return stored.engine_params(), jobs.replay_settings(stored.workload, stored, None)


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
    return policy.engine_params(), jobs.pool_settings(policy)


def _describe(exc: Exception) -> str:
    if isinstance(exc, ValidationError) and hasattr(exc, "error_dict"):
        parts = []
        for name, messages in sorted(exc.message_dict.items()):
            text = " ".join(messages)
            name = "policy" if name == "__all__" else name
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
    """A one-line bar (on stderr): the share done over all runs and the run in progress,
    redrawn only when a whole percent more is done."""

    WIDTH = 30

    def __init__(self, stream: OutputWrapper) -> None:
        self.stream = stream
        self.shown = (-1, "")

    def __call__(self, overall: float, label: str) -> None:
        percent = int(overall * 100)
        if (percent, label) == self.shown:
            return
        self.shown = (percent, label)
        filled = round(overall * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.stream.write(f"\r{label:<11} [{bar}] {percent:3d} %", ending="")
        self.stream.flush()

    def done(self) -> None:
        self.stream.write("\r" + " " * (self.WIDTH + 20) + "\r", ending="")
        self.stream.flush()


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f} %"


def _num(value: float | None, fmt: str = ".2f") -> str:
    return "-" if value is None else format(value, fmt)


def render(results: list[BacktestResult], trace: str, *, show_oracle: bool) -> str:
    """The human-readable report: a header, one row per algorithm, the oracle's bound and
    its schedule, then the warnings."""
    first = results[0]
    lines = [
        f"Back-test of {trace}: {first.requests:,} requests over {first.duration_s / 60:.1f} min "
        f"on {first.gpu_type} x{first.gpus_per_replica}, {first.model}, "
        f"cold start {first.cold_start_s:g} s, tick {first.tick_s:g} s",
        f"SLO: TTFT <= {first.slo_ttft_s:g} s and mean inter-token latency <= "
        f"{first.slo_tpot_s * 1000:g} ms; attainment is over feasible requests",
        _price_line(first),
        (
            f"Infeasible: {first.infeasible_text} even on an idle replica; left out of the "
            "attainment"
            if first.infeasible_text
            else "Infeasible: none (every request could meet the SLO on an idle replica)"
        ),
        "",
    ]
    header = (
        f"{'policy':<13} {'SLO att.':>9} {'TTFT p50/p95/p99 s':>20} {'GPU-h':>8} "
        f"{'x oracle':>8} {'x sched.':>8} {'$/h':>8} {'$/1k req':>8} {'mean/peak':>10} "
        f"{'scale ev.':>9} {'GPU util':>8}"
    )
    lines += [header, "-" * len(header)]
    for r in results:
        ttft = f"{_num(r.ttft_p50_s)}/{_num(r.ttft_p95_s)}/{_num(r.ttft_p99_s)}"
        lines.append(
            f"{r.algorithm:<13} {_pct(r.slo_attainment):>9} {ttft:>20} {r.gpu_hours:>8.2f} "
            f"{_num(r.gpu_hours_vs_oracle):>8} {_num(r.gpu_hours_vs_oracle_schedule):>8} "
            f"{_num(r.cost_per_hour):>8} {_num(r.cost_per_1k_requests, '.3f'):>8} "
            f"{f'{r.mean_replicas:.1f}/{r.peak_replicas}':>10} "
            f"{r.scale_events:>9} {r.mean_gpu_util * 100:>7.0f}%"
        )
    oracle = first.oracle
    if show_oracle and oracle is not None:
        lines += _oracle_rows(oracle, first.duration_s, first.requests)
    warnings = jobs.job_warnings(results)
    if warnings:
        lines += ["", "Warnings:", *(f"  ! {w}" for w in warnings)]
    credit = jobs.attribution(first.trace)
    if credit is not None:
        lines.append(f"trace: {credit}")
    return "\n".join(lines)


def _price_line(result: BacktestResult) -> str:
    if result.price_per_gpu_hour is None:
        return "Price: none (costs not computed)"
    where = {
        "given": "the GPU type's hourly cost or --price",
        "assumed": "an assumed price for the type, not a quote: set the GPU type's hourly "
        "cost or pass --price",
    }.get(result.price_source or "", result.price_source or "")
    return (
        f"Price: ${result.price_per_gpu_hour:.2f} per GPU-hour ({where}); $/h is per hour of "
        "trace, $/1k req per thousand requests of the trace"
    )


def _oracle_rows(oracle: OracleResult, duration_s: float, requests: int) -> list[str]:
    """The bound (what ``x oracle`` divides by) and the schedule that realises it."""
    peak = f"{oracle.mean_replicas:.1f}/{oracle.peak_replicas}"
    ratio = oracle.replay_gpu_hours / oracle.gpu_hours if oracle.gpu_hours > 0 else None
    goal = oracle.target_attainment if oracle.goal_met else oracle.bound_attainment

    def money(cost: float | None) -> str:
        per_hour = None if cost is None else cost / (duration_s / 3600.0)
        per_1k = None if cost is None or not requests else cost / requests * 1000.0
        return f"{_num(per_hour):>8} {_num(per_1k, '.3f'):>8}"

    return [
        f"{'oracle bound':<13} {_pct(goal):>9} {'-':>20} {oracle.gpu_hours:>8.2f} "
        f"{'1.00':>8} {_num(1 / ratio if ratio else None):>8} {money(oracle.cost_usd)} "
        f"{'-':>10} {'-':>9} {'-':>8}",
        f"{'oracle sched.':<13} {_pct(oracle.slo_attainment):>9} {'-':>20} "
        f"{oracle.replay_gpu_hours:>8.2f} {_num(ratio):>8} {'1.00':>8} "
        f"{money(oracle.replay_cost_usd)} {peak:>10} {oracle.scale_events:>9} {'-':>8}",
        "",
        f"oracle: clairvoyant lower bound over {oracle.window_s:g} s windows with one "
        f"{1 - oracle.target_attainment:.0%} miss budget over the trace; no schedule meeting "
        f"{oracle.target_attainment:.0%} spends less. Its schedule, replayed with work "
        "carried over, is what a clairvoyant controller achieves: the optimum lies between "
        "the two (docs/backtest.md)",
    ]
