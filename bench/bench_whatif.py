"""The signal history's costs: the loop's append at 1,000 workloads, and the live what-if.

1. Append: one tick of 1,000 workloads into their open chunks (``append_ticks``, the loop's
   extra statements inside ``_record``'s transaction), over 10 minutes of a 5 s loop in steady
   state (chunks of every fill: the text rewritten per row grows with its chunk).
2. What-if: 6 hours of one workload's signals recorded every 5 s, then compacted as the
   periodic task leaves them (minute means before the last hour); the what-if view (Django's
   test client: form validation, the read, ``replay_signals``, JSON) for 15 min, 1 h and 6 h
   windows, per algorithm: the first request, then the median of REPEATS more, each with
   another target (as while typing), ``decide`` alone per tick on the same ticks (CPU,
   best of 3), and the last edit sent again (answered from the memo: the fixed costs of a
   keystroke, CPU). The browser's round trip adds the network and the drawing (the page shows
   both numbers beside the chart).

On a throw-away test database: SQLite by default, PostgreSQL with DATABASE_URL.
"""

import argparse
import math
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--repeats", type=int, default=7)
parser.add_argument("--whatif-only", action="store_true", help="skip the append benchmark")
parser.add_argument("--algorithms", default="hpa,kpa,predictive")
parser.add_argument(
    "--profile",
    action="store_true",
    help="cProfile each what-if: top 25 own time, top 40 cumulative",
)
ARGS = parser.parse_args()

import django  # noqa: E402

django.setup()

from django.contrib.auth.models import User  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.test import Client  # noqa: E402

from clusters.models import Cluster  # noqa: E402
from quotas.models import GpuType  # noqa: E402
from scaling import signal_store, whatif  # noqa: E402
from scaling.capacity import replica_capacity  # noqa: E402
from scaling.models import ScalingPolicy, Workload  # noqa: E402
from scaling.signals import SignalTick  # noqa: E402
from tenants.models import Membership, Namespace, Tenant  # noqa: E402

WORKLOADS = 1000
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def tick(now: float, k: int) -> SignalTick:
    busy = (k // 120) % 2 == 0
    value = 12.0 if busy else 3.0
    return SignalTick(
        now=now,
        current=2,
        ready=2,
        metric=(now - 1, value),
        metric_pods=2.0,
        prompt_tokens_per_s=900.0 * value,
        generation_tokens_per_s=80.0 * value,
        ttft_p95_s=0.2 + value / 100,
    )


def setup() -> tuple[list[Workload], User]:
    gpu = GpuType.objects.create(name="A100-80GB", memory_gib=80, node_label="NVIDIA-A100")
    cluster = Cluster.objects.create(name="c0", api_url="http://127.0.0.1:1/c0")
    tenant = Tenant.objects.create(slug="team", name="Team")
    Namespace.objects.create(tenant=tenant, cluster=cluster, name="team")
    workloads = Workload.objects.bulk_create(
        [
            Workload(
                tenant=tenant,
                cluster=cluster,
                namespace="team",
                deployment=f"m-{i}",
                model_name=MODEL,
                gpu_type=gpu,
                loop_state={},
            )
            for i in range(WORKLOADS)
        ]
    )
    ScalingPolicy.objects.bulk_create([ScalingPolicy(workload=w, target=8) for w in workloads])
    user = User.objects.create_user("op", password="pw-bench-1")
    Membership.objects.create(user=user, tenant=tenant, role="operator")
    return workloads, user


def append_once(workloads: list[Workload], now: float, k: int) -> float:
    rows = [(w, w.loop_state.get("signals"), tick(now, k)) for w in workloads]
    started = time.perf_counter()
    with transaction.atomic():
        signal_store.append_ticks(rows)
    return time.perf_counter() - started


def bench_append(workloads: list[Workload], start: float) -> dict[str, float]:
    """Per-tick cost over 15 minutes of a 5 s loop; the first 5 minutes bring the chunks to
    their steady mix (every fill from 1 to 60 lines, a few rows opened per tick), the last 10
    are measured."""
    spent = [append_once(workloads, start + 5.0 * k, k) for k in range(180)]
    steady = sorted(spent[60:])
    return {
        "first_tick_s": round(spent[0], 4),
        "steady_median_s": round(statistics.median(steady), 4),
        "steady_p90_s": round(steady[int(0.9 * len(steady))], 4),
        "steady_max_s": round(steady[-1], 4),
    }


def bench_whatif(workload: Workload, user: User) -> dict[str, dict[str, float]]:
    now = time.time()
    k0 = int(6 * 3600 / 5)
    for k in range(k0):
        t = now - 6 * 3600 + 5 * k
        rows = [(workload, workload.loop_state.get("signals"), tick(t, k))]
        signal_store.append_ticks(rows)
    workload.save(update_fields=["loop_state"])
    signal_store.downsample(now)
    client = Client()
    client.force_login(user)
    policy = workload.policy
    out: dict[str, dict[str, float]] = {}
    for algorithm in ARGS.algorithms.split(","):
        for window in ("900", "3600", "21600"):
            data = {
                "algorithm": algorithm,
                "mode": "enforce",
                "metric": policy.metric,
                "aggregation": policy.aggregation,
                "target": 5,
                "min_replicas": 1,
                "max_replicas": 10,
                "cold_start_s": policy.cold_start_s,
                "max_metric_age_s": policy.max_metric_age_s,
                "version": policy.version,
                "window": window,
            }
            spent, cpu, ticks = [], [], 0
            for i in range(ARGS.repeats + 1):
                # A new target each time, as while typing: no answer is a repeat. The first
                # request of a window and algorithm also builds the engine's view of the
                # ticks (scaling.whatif.observe); the others reuse it.
                data["target"] = 5 + 0.1 * i
                started, started_cpu = time.perf_counter(), time.process_time()
                response = client.post(f"/workloads/{workload.pk}/whatif/", data)
                spent.append(time.perf_counter() - started)
                cpu.append(time.process_time() - started_cpu)
                assert response.status_code == 200, response.content
                ticks = len(response.json()["t"])
            fixed = fixed_cost(client, f"/workloads/{workload.pk}/whatif/", data)
            if ARGS.profile:
                data["target"] = 4.5
                profile(client, f"/workloads/{workload.pk}/whatif/", data)
            key = f"{algorithm} {int(window) // 60} min"
            engine_ms = engine_per_tick(workload, policy, algorithm, float(window), now)
            out[key] = {
                "engine_ms_per_tick": engine_ms,
                "ms": round(1000 * statistics.median(spent[1:]), 1),
                "first_ms": round(1000 * spent[0], 1),
                # CPU time of the request (the test client runs it in this process): what
                # the other load on a shared machine does not inflate.
                "cpu_ms": round(1000 * statistics.median(cpu[1:]), 1),
                "fixed_cpu_ms": fixed,
                "ticks": ticks,
            }
    return out


def fixed_cost(client: Client, url: str, data: dict[str, object]) -> float:
    """CPU ms of the same edit sent again (median of REPEATS): the answer comes from the
    memo, so what is left is what every keystroke pays besides the replay (session, form
    validation, reading the stored ticks and the memo key, JSON)."""
    cpu = []
    for _ in range(ARGS.repeats):
        started = time.process_time()
        response = client.post(url, data)
        cpu.append(time.process_time() - started)
        assert response.status_code == 200, response.content
    return round(1000 * statistics.median(cpu), 1)


def engine_per_tick(
    workload: Workload, policy: ScalingPolicy, algorithm: str, window_s: float, now: float
) -> float:
    """``decide`` alone, CPU ms per tick (best of 3): the engine's share of a what-if, on
    the same stored ticks and the policy the requests send (target 5, 1-10 replicas)."""
    params = replace(
        policy.engine_params(), algorithm=algorithm, target=5.0, min_replicas=1, max_replicas=10
    )
    capacity = replica_capacity(
        workload.gpu_type.profile, workload.model_name, workload.gpus_per_replica, None
    )
    ticks = [
        replace(t, capacity=capacity)
        for t in signal_store.load_ticks(workload, now - window_s, now)
    ]
    observations = whatif.observe(params, ticks).observations
    best = math.inf
    for _ in range(3):
        started = time.process_time()
        whatif.decide_each(params, observations)
        best = min(best, time.process_time() - started)
    return round(1000 * best / max(len(observations), 1), 3)


def profile(client: Client, url: str, data: dict[str, object]) -> None:
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    client.post(url, data)
    profiler.disable()
    print(f"--- {data['algorithm']} {data['window']} s")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)  # where the request's time goes, by caller


def main() -> None:
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        workloads, user = setup()
        append = {} if ARGS.whatif_only else bench_append(workloads, time.time() - 7 * 3600)
        whatif = bench_whatif(workloads[0], user)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
    print(f"signal history [{connection.vendor}], {WORKLOADS} workloads:")
    for name, seconds in append.items():
        print(f"  {name}: {1000 * seconds:.1f} ms")
    for name, result in whatif.items():
        print(
            f"  what-if {name}: {result['ms']} ms server (CPU {result['cpu_ms']} ms), "
            f"first {result['first_ms']} ms "
            f"({result['ticks']} ticks replayed; decide alone "
            f"{result['engine_ms_per_tick']} ms CPU per tick; "
            f"same edit again, from the memo: {result['fixed_cpu_ms']} ms CPU)"
        )


if __name__ == "__main__":
    main()
