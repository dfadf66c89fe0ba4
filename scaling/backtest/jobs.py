"""Back-test jobs: one policy (and the algorithms it is compared with) replayed over one trace,
as the ``backtest`` command, the API's job (``scaling.tasks.run_backtest_job``) and the what-if
preview (``dashboard.preview``) all run it. They differ only in how they report progress and
where the result goes; what is replayed, on what, with which defaults, is decided here once.

    runs = compared_runs(policy.engine_params(), ["kpa", "slo"])
    replay = replay_settings(workload, policy, duration_s=600.0)
    check_replay(runs, replay)                       # ValueError now rather than in a worker
    results = run_job(runs, "conv", replay, progress=lambda share, algorithm: ...)
    job_result(results)    # {"results": [...], "oracle": {...}, "infeasible": "...",
                           #  "warnings": [...], "attribution": "..."}

No Django at run time: the workload and the policy are read by attribute.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from scaling.engine import PolicyParams
from scaling.engine.types import TARGET_OPTIONAL
from simulator.traces import NAMED_TRACES, RECORDED_TRACES

from .deployment import Deployment, TraceInput, gpu_price
from .replay import run_backtest
from .result import BacktestResult, OracleResult
from .signals import check_metric
from .slo import DEFAULT_SLO_TTFT_S

if TYPE_CHECKING:
    from scaling.models import ScalingPolicy, Workload

# The bundled traces a job may replay, name -> title (the API's and the preview's choices).
TRACES: dict[str, str] = RECORDED_TRACES
AZURE_ATTRIBUTION = (
    '"Azure LLM inference trace 2023" by Microsoft Azure (Azure Public Dataset), CC BY 4.0 '
    "(https://creativecommons.org/licenses/by/4.0/); see simulator/traces/README.md"
)
ORACLE = "oracle"  # in a compare list: the oracle, which every job with an oracle computes
# A replay setting that is not run_backtest's: USD per GPU-hour to price the result at (None
# or 0: the assumed catalogue price, deployment.ASSUMED_PRICE_USD_PER_GPU_HOUR).
PRICE_KEY = "price_per_gpu_hour"
# The replay settings that describe the deployment (the rest are the SLO, tick and window).
DEPLOYMENT_KEYS = ("gpu_type", "model", "gpus_per_replica", "max_concurrency", "routing")

# Progress of a whole job: the share done over all its runs (0..1) and the algorithm running.
JobProgress = Callable[[float, str], None]


def pool_settings(policy: ScalingPolicy) -> dict[str, Any]:
    """The policy's pool settings a replay honours (only those it sets)."""
    out: dict[str, Any] = {}
    if policy.max_concurrency:
        out["max_concurrency"] = policy.max_concurrency
    if policy.routing:
        out["routing"] = policy.routing
    return out


def replay_settings(
    workload: Workload, policy: ScalingPolicy, duration_s: float | None
) -> dict[str, Any]:
    """What the trace is replayed on (JSON-safe, stored on a job): the workload's model and
    GPU type (its catalogue profile, ``GpuType.profile``) and its price (``hourly_cost``;
    0, the field's default, means unknown), the policy's pool."""
    gpu = workload.gpu_type
    profile = gpu.profile
    replay: dict[str, Any] = {
        # A type without a profile keeps its name, which the replay refuses with the list of
        # known ones.
        "gpu_type": profile.name if profile is not None else gpu.name,
        "model": workload.model_name,
        "gpus_per_replica": workload.gpus_per_replica,
        "duration_s": duration_s,
        PRICE_KEY: float(gpu.hourly_cost) or None,
    }
    return replay | pool_settings(policy)


def as_algorithm(
    params: PolicyParams, name: str, slo_ttft_s: float = DEFAULT_SLO_TTFT_S
) -> PolicyParams:
    """The same policy under another algorithm; slo gets the replay's TTFT objective as its
    target when the policy has none."""
    changed = replace(params, algorithm=name)
    if name == "slo" and changed.slo_ttft_p95_s is None:
        changed = replace(changed, slo_ttft_p95_s=slo_ttft_s)
    return changed


def compared_runs(
    params: PolicyParams, compare: Iterable[str], slo_ttft_s: float = DEFAULT_SLO_TTFT_S
) -> list[PolicyParams]:
    """The policy, then the same policy under each compared algorithm (the oracle and the
    policy's own algorithm are not runs of their own)."""
    others = [name for name in compare if name not in (ORACLE, params.algorithm)]
    return [params, *(as_algorithm(params, name, slo_ttft_s) for name in others)]


def check_replay(runs: Sequence[PolicyParams], replay: dict[str, Any]) -> None:
    """Raise ValueError now for what would make the replay fail later (unknown GPU type or
    routing, a model that does not fit, a metric the replay cannot produce)."""
    deployment = {k: replay[k] for k in DEPLOYMENT_KEYS if k in replay}
    cold_start_s = replay.get("cold_start_s")
    if cold_start_s is None:  # as run_backtest: the policy's
        cold_start_s = runs[0].cold_start_s
    Deployment(cold_start_s=cold_start_s, **deployment)
    gpu_price(replay.get("gpu_type", ""), replay.get(PRICE_KEY))
    for params in runs:
        check_metric(params)
    check_targets(runs)


def check_targets(runs: Sequence[PolicyParams]) -> None:
    """Raise ValueError when a run's algorithm reads a target the policy does not have (a
    predictive or slo policy without one, compared with hpa, kpa or apa)."""
    for params in runs:
        if params.target is None and params.algorithm not in TARGET_OPTIONAL:
            raise ValueError(
                f"the {params.algorithm} algorithm needs a target and the policy has none "
                f"(give it one to compare with {params.algorithm})"
            )


def run_job(
    runs: Sequence[PolicyParams],
    trace: TraceInput,
    replay: dict[str, Any],
    *,
    oracle: bool = True,
    initial_replicas: int | None = None,
    progress: JobProgress | None = None,
) -> list[BacktestResult]:
    """Replay ``trace`` through each run in turn with the ``replay`` settings (keyword
    arguments of ``run_backtest``). The oracle, when asked for, is computed by the first run
    and reused by the others (same trace, same settings). ``initial_replicas`` (the replicas
    that served at the trace's start) is held to each run's [min, max]. Raises what
    ``run_backtest`` raises: ValueError (also for a run whose algorithm needs a target the
    policy lacks), and ``TraceError`` for a bad trace."""
    check_targets(runs)
    settings = dict(replay)
    price = settings.pop(PRICE_KEY, None)
    results: list[BacktestResult] = []
    reuse: bool | OracleResult = oracle
    for index, params in enumerate(runs):
        if initial_replicas is not None:
            settings["initial_replicas"] = min(
                max(initial_replicas, params.min_replicas), params.max_replicas
            )
        result = run_backtest(
            params,
            trace,
            oracle=reuse,
            progress=_share_of(progress, index, len(runs), params.algorithm),
            **settings,
        )
        reuse = result.oracle or False
        results.append(priced(result, price))
    return results


def priced(result: BacktestResult, given: float | None) -> BacktestResult:
    """``result`` (and its oracle) priced per GPU-hour at ``given`` USD, or at the assumed
    catalogue price of its GPU type when ``given`` is None or 0 (``deployment.gpu_price``)."""
    price, source = gpu_price(result.gpu_type, given)
    oracle = result.oracle
    if oracle is not None:
        oracle = replace(oracle, price_per_gpu_hour=price)
    return replace(result, price_per_gpu_hour=price, price_source=source, oracle=oracle)


def _share_of(
    progress: JobProgress | None, index: int, runs: int, algorithm: str
) -> Callable[[float], None] | None:
    if progress is None:
        return None
    return lambda done: progress((index + min(max(done, 0.0), 1.0)) / runs, algorithm)


def job_result(results: Sequence[BacktestResult]) -> dict[str, Any]:
    """The job's JSON (the API's job result, ``manage.py backtest --json``): every run
    without its oracle, the oracle once, the job's warnings (every run's, then the
    oracle's: ``job_warnings``), the infeasible requests as a sentence, and the trace's
    attribution when it is a bundled one."""
    runs = []
    for result in results:
        data = result.to_dict()
        data.pop("oracle", None)
        runs.append(data)
    oracle = results[0].oracle
    return {
        "results": runs,
        "oracle": oracle.to_dict() if oracle is not None else None,
        "infeasible": results[0].infeasible_text,
        "warnings": job_warnings(results),
        "attribution": attribution(results[0].trace),
    }


def job_warnings(results: Sequence[BacktestResult]) -> list[str]:
    """What makes a job's comparison less than it seems: a run at its max_replicas, an
    oracle capped, out of reach of the goal or replaying under it."""
    out = [warning for result in results for warning in result.warnings]
    oracle = results[0].oracle if results else None
    return out + (oracle.warnings if oracle is not None else [])


def attribution(trace_name: str) -> str | None:
    """The licence credit a result on ``trace_name`` carries (None for the user's own)."""
    bundled = {path.stem for path in NAMED_TRACES.values()}
    return AZURE_ATTRIBUTION if trace_name in bundled else None
