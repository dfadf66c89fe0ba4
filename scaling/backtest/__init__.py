"""Back-testing: replay a request trace through a scaling policy on the simulator's virtual
clock, with the decision engine deciding every tick exactly as the live loop does, and
compare the GPU-hours with a clairvoyant oracle. Pure Python (no Django, no I/O besides
reading a trace file): the ``backtest`` management command, the API's back-test job and the
UI's what-if preview all run one job (:mod:`scaling.backtest.jobs`), which calls
:func:`run_backtest`. docs/backtest.md has the details.

    run_backtest(policy: PolicyParams, trace, *, gpu_type="A100-80GB",
                 model="meta-llama/Llama-3.1-8B-Instruct", gpus_per_replica=1,
                 cold_start_s=None, slo_ttft_s=2.0, slo_tpot_s=0.1, tick_s=5.0,
                 max_concurrency=256, routing="shortest-expected-delay", start_s=0.0,
                 duration_s=None, initial_replicas=None, oracle=True,
                 progress=None) -> BacktestResult

    replay_signals(policy: PolicyParams, ticks: Iterable[SignalTick],
                   memory=None) -> list[Decision]   # recorded signals, no pool

    scaling.backtest.mix.run_mix_backtest(policy, trace, settings=MixSettings(...),
                   **run_backtest_keywords) -> MixBacktest  # the GPU mix chosen every tick
"""

from .deployment import DEFAULT_GPU_TYPE, DEFAULT_MODEL, Deployment, trace_requests
from .oracle import run_oracle
from .replay import replay_signals, run_backtest
from .result import BacktestResult, OracleResult, TimelinePoint
from .signals import SUPPORTED_METRICS
from .slo import Attainment, Slo

__all__ = [
    "DEFAULT_GPU_TYPE",
    "DEFAULT_MODEL",
    "SUPPORTED_METRICS",
    "Attainment",
    "BacktestResult",
    "Deployment",
    "OracleResult",
    "Slo",
    "TimelinePoint",
    "replay_signals",
    "run_backtest",
    "run_oracle",
    "trace_requests",
]
