"""The live loop and the back-test's replay see the same signals and decide the same.

One recorded series (the policy metric, the token counters, the prefix cache's hits and the
TTFT histogram, per pod)
is pinned on the simulator's exporter tick by tick (its `metric_values` fault) while the real
control loop ticks on an injected clock; the same series, as the loop's recorded ticks, goes
through `replay_signals`. Every algorithm in the registry must want the same replica count,
for the same reason, at every tick.

Dry-run, not enforce: the Deployments keep their replicas, so `current` and `ready` are the
same known constant on both sides and the comparison is exact; in enforce mode the replay's
ticks would have to copy `current` from the live side, and readiness would depend on the
simulator's cold starts in real time.
"""

import time
from dataclasses import replace
from typing import Any

import pytest
from kubernetes import client as k8s

from scaling.backtest import replay_signals
from scaling.capacity import replica_capacity
from scaling.engine import OFFERED_WORK, PodSample, PodState, PolicyParams, reads
from scaling.loop import tick_cluster
from scaling.models import ScalingPolicy, Workload
from scaling.observe import histogram_quantile
from scaling.signals import SignalTick
from simulator.histogram import TTFT_BUCKETS
from tests.scaling.test_loop import CHAT, fleet, register, set_faults

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

TICK_S = 5.0
TICKS = 100  # 500 s: kpa's 300 s window (and panic) ends inside it
REPLICAS = 2
POLICIES: dict[str, dict[str, Any]] = {
    "hpa": {"algorithm": "hpa"},
    "kpa-60": {"algorithm": "kpa", "stable_window_s": 60},
    "kpa-300": {"algorithm": "kpa", "stable_window_s": 300},
    "apa": {"algorithm": "apa"},
    "predictive": {"algorithm": "predictive"},
    # Over the objective: the pinned histogram puts every TTFT in the first bucket.
    "slo": {"algorithm": "slo", "slo_ttft_p95_s": TTFT_BUCKETS[0] / 2},
}
RUNNING = "vllm:num_requests_running"
PROMPT = "vllm:prompt_tokens_total"
GENERATION = "vllm:generation_tokens_total"
HITS = "vllm:prefix_cache_hits_total"
TTFT = "vllm:time_to_first_token_seconds_bucket"


def running(k: int) -> float:
    """Per pod: busy for the first 150 s, then quiet, with a ripple."""
    return 12.0 + k % 3 if k < 30 else 2.0 + k % 2


def counters(k: int) -> tuple[float, float, float, float]:
    """Per-pod cumulative prompt tokens, generation tokens, TTFT bucket count and prompt
    tokens served from the prefix cache after tick ``k``: a burst of work, then a trickle;
    no request finishes on every fourth tick; from tick 40 on, sessions resend their history
    and two thirds of the prompt tokens are cache hits, no work to size for."""
    prompt = gen = ttft = hits = 0.0
    for i in range(k + 1):
        tokens = 60_000.0 * (1 + i % 3) if i < 30 else 4_000.0
        prompt += tokens
        hits += tokens * 2 / 3 if i >= 40 else 0.0
        gen += 9_000.0 if i < 30 else 600.0
        ttft += 0.0 if i % 4 == 3 else 3.0
    return prompt, gen, ttft, hits


def pod_names(url: str, name: str) -> list[str]:
    api = k8s.ApiClient(k8s.Configuration(host=f"{url}/east"))
    selector = k8s.AppsV1Api(api).read_namespaced_deployment(name, "team-a").spec.selector
    labels = ",".join(f"{k}={v}" for k, v in selector.match_labels.items())
    pods = k8s.CoreV1Api(api).list_namespaced_pod("team-a", label_selector=labels).items
    return sorted(p.metadata.name for p in pods if _ready(p))


def _ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or ())


def wait_ready(url: str, names: list[str]) -> dict[str, list[str]]:
    deadline = time.monotonic() + 30.0
    while time.monotonic() < deadline:
        pods = {name: pod_names(url, name) for name in names}
        if all(len(p) == REPLICAS for p in pods.values()):
            return pods
        time.sleep(0.2)
    raise AssertionError("the Deployments' replicas did not become ready")


def recorded(
    k: int, now: float, policy: PolicyParams, pods: list[str], capacity: Any
) -> SignalTick:
    """Tick ``k`` as the loop records it: a mean over the pods' series, counters summed over
    pods turned into rates against the previous tick, TTFT p95 from the bucket deltas."""
    value, n = running(k), float(len(pods))
    tick = SignalTick(
        now=now,
        current=REPLICAS,
        ready=REPLICAS,
        metric=(now, value if policy.aggregation == "average" else value * n),
        metric_pods=n if policy.aggregation == "average" else None,
        pods=tuple(PodState(p, True) for p in pods),
        samples=tuple(PodSample(p, now, value) for p in pods),
    )
    if OFFERED_WORK not in reads(policy) or k == 0:
        return tick if OFFERED_WORK not in reads(policy) else _with(tick, capacity)
    (p0, g0, b0, h0), (p1, g1, b1, h1) = counters(k - 1), counters(k)
    before = {str(le): b0 * n for le in (*TTFT_BUCKETS, "+Inf")}
    after = {str(le): b1 * n for le in (*TTFT_BUCKETS, "+Inf")}
    return _with(
        tick,
        capacity,
        prompt=((p1 - h1) - (p0 - h0)) * n / TICK_S,  # only what needed prefill
        generation=(g1 - g0) * n / TICK_S,
        ttft=histogram_quantile(0.95, before, after),
    )


def _with(tick: SignalTick, capacity: Any, **rates: float | None) -> SignalTick:
    return replace(
        tick,
        capacity=capacity,
        prompt_tokens_per_s=rates.get("prompt"),
        generation_tokens_per_s=rates.get("generation"),
        ttft_p95_s=rates.get("ttft"),
    )


def test_the_live_loop_and_the_replay_want_the_same_replicas_every_tick(
    start_simulator, gpu_type, team_a
):
    idle = {"kind": "constant", "rate_rps": 0.0}
    deployments = [
        CHAT | {"name": name, "replicas": REPLICAS, "load": idle, "cold_start_s": 0.5}
        for name in POLICIES
    ]
    url = start_simulator(fleet(*deployments))
    for name, fields in POLICIES.items():
        cluster, _ = register(
            url, gpu_type, team_a, name=name, mode="dry-run", max_replicas=10, **fields
        )
    pods = wait_ready(url, list(POLICIES))
    live: dict[str, list[tuple[Any, ...]]] = {name: [] for name in POLICIES}
    start = time.time()
    for k in range(TICKS):
        prompt, gen, ttft, hits = counters(k)
        pinned = {RUNNING: running(k), PROMPT: prompt, GENERATION: gen, TTFT: ttft, HITS: hits}
        set_faults(url, metric_values=pinned)
        tick_cluster(cluster.pk, now=start + k * TICK_S)
        for workload in Workload.objects.filter(cluster=cluster):
            s = workload.status
            live[workload.deployment].append((s["desired"], s["raw_desired"], s["reason"]))

    replayed: dict[str, list[int]] = {}
    for name in POLICIES:
        policy = ScalingPolicy.objects.get(workload__deployment=name)
        workload = policy.workload
        params = policy.engine_params()
        capacity = replica_capacity(
            workload.gpu_type.profile, workload.model_name, 1, policy.max_concurrency
        )
        ticks = [
            recorded(k, start + k * TICK_S, params, pods[name], capacity) for k in range(TICKS)
        ]
        decisions = replay_signals(params, ticks)
        assert [(d.desired, d.raw_desired, d.reason) for d in decisions] == live[name], name
        replayed[name] = [d.desired for d in decisions]

    # The series moves every algorithm, and kpa's 300 s window is not its 60 s one (nor a
    # 120 s one, what the live loop used to keep): the history's length is what is compared.
    for name, desired in replayed.items():
        assert len(set(desired)) > 1, f"{name} never changed its mind: {desired}"
    assert replayed["kpa-300"] != replayed["kpa-60"]
    kpa_300 = ScalingPolicy.objects.get(workload__deployment="kpa-300").engine_params()
    short = replace(kpa_300, stable_window_s=120.0)
    ticks = [recorded(k, start + k * TICK_S, short, pods["kpa-300"], None) for k in range(TICKS)]
    assert [d.desired for d in replay_signals(short, ticks)] != replayed["kpa-300"]
