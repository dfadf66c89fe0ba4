"""The mix step of the live loop (scaling.variants) on fixed inputs: the hysteresis against
moving replicas between types for a small saving, and each type's quota and placement room."""

from datetime import UTC, datetime
from typing import Any

import pytest

from clusters.kubernetes import DeploymentState, PodState
from clusters.models import Cluster, GpuNode
from quotas.models import GpuType, Quota
from scaling import variants
from scaling.engine import mix
from scaling.models import ScalingPolicy, Workload, WorkloadVariant
from tenants.models import Tenant

pytestmark = pytest.mark.django_db

MODEL = "meta-llama/Llama-3.1-8B-Instruct"
# An A40 does about a third (1/3.34) of an A100's work on these requests.
SIZES = variants.RequestSizes(prompt_tokens=1000, output_tokens=170)


@pytest.fixture
def a40(db: Any) -> GpuType:
    return GpuType.objects.create(name="A40-48GB", memory_gib=48, node_label="NVIDIA-A40")


def pool(a100: GpuType, a40: GpuType, current: tuple[int, int], a40_max: int) -> variants.Pool:
    def state(name: str, n: int) -> DeploymentState:
        return DeploymentState("team-a", name, n, n, n)

    parts = (
        variants.Part(a100, state("chat", current[0]), 0, 10, None),
        variants.Part(a40, state("chat-a40", current[1]), 0, a40_max, 1),
    )
    return variants.Pool(parts, [], state("chat", sum(current)))


def choose(
    a100: GpuType,
    a40: GpuType,
    price: str,
    current: tuple[int, int],
    memory: mix.MixMemory | None = None,
    now: float = 0.0,
    routing: str = "least-outstanding",
) -> variants.Choice:
    a40.hourly_cost = price
    workload = Workload(model_name=MODEL, gpus_per_replica=1, gpu_type=a100)
    # Least-outstanding routing: the A40s get work whatever their longer decode (mix.routed).
    policy = ScalingPolicy(min_replicas=1, max_replicas=10, cold_start_s=60.0, routing=routing)
    found = pool(a100, a40, current, a40_max=4)
    memory = memory or variants.memory_of(found, None)
    shape = [variants.mean_class(SIZES)]
    return variants.choose(workload, policy, found, 4, shape, {}, memory, now)


def test_the_cheapest_mix_is_chosen_when_no_replica_has_to_move(gpu_type, a40):
    # 3 A100s and 4 A40s ($8.60/h at $0.50) serve what 4 A100s ($8.80/h) do.
    assert choose(gpu_type, a40, "0.50", (3, 4)).replicas == {"A100-80GB": 3, "A40-48GB": 4}
    assert choose(gpu_type, a40, "0.50", (0, 0)).replicas == {"A100-80GB": 3, "A40-48GB": 4}


def test_replicas_stay_on_their_type_for_a_saving_under_the_hysteresis(gpu_type, a40):
    # Moving one running A100 to four A40s would save 2.3 %: under mix.HYSTERESIS, they stay.
    assert choose(gpu_type, a40, "0.50", (4, 0)).replicas == {"A100-80GB": 4, "A40-48GB": 0}


def test_replicas_move_for_a_saving_over_the_hysteresis_after_a_cold_start(gpu_type, a40):
    # At $0.30 an A40 the same move saves 11 %: over the 10 %, it is wanted, and made once it
    # has been the choice for a cold start (mix.dwell; the back-test's rule too).
    first = choose(gpu_type, a40, "0.30", (4, 0))
    assert first.replicas == {"A100-80GB": 4, "A40-48GB": 0}
    assert first.memory is not None and first.memory.wanted == ("A100-80GB", "A40-48GB")
    later = choose(gpu_type, a40, "0.30", (4, 0), first.memory, now=60.0)
    assert later.replicas == {"A100-80GB": 3, "A40-48GB": 4}


def test_an_expected_delay_router_keeps_work_off_a_type_that_decodes_too_slowly(gpu_type, a40):
    # 170 output tokens x 22 ms more per step on an A40 is beyond the TTFT left after
    # prefill: a shortest-expected-delay router sends it work only once the A100s are late.
    chosen = choose(gpu_type, a40, "0.30", (0, 0), routing="shortest-expected-delay")
    assert chosen.replicas == {"A100-80GB": 4, "A40-48GB": 0}


def test_the_reason_names_the_prompts_only_the_faster_type_serves(gpu_type, a40):
    """A histogram window of 2k-token prompts and a few of 5k-10k: the A40 prefills at most
    6,953 tokens within 75 % of the 2 s TTFT, the A100 14,336, so only the A100 serves the
    long ones, and the reason says so beside the mix."""
    bounds = ["1000.0", "2000.0", "5000.0", "10000.0", "20000.0", "+Inf"]
    cumulative = [0, 90, 90, 100, 100, 100]
    buckets = dict(zip(bounds, cumulative, strict=True))
    before = {"at": 0.0, "buckets": dict.fromkeys(bounds, 0)}
    window = variants.prompt_window(None, before, {"at": 15.0, "buckets": buckets}, 2100.0, 600.0)
    shape = variants.window_classes(window, 1.0, 100_000, buckets)
    assert [c.name for c in shape] == ["<=2000", "<=10000"]
    a40.hourly_cost = "0.30"
    workload = Workload(model_name=MODEL, gpus_per_replica=1, gpu_type=gpu_type)
    policy = ScalingPolicy(min_replicas=1, max_replicas=10, routing="least-outstanding")
    found = pool(gpu_type, a40, (0, 0), a40_max=10)
    chosen = variants.choose(
        workload, policy, found, 4, shape, {}, variants.memory_of(found, None), 0.0
    )
    assert chosen.replicas["A40-48GB"] > 0 and chosen.replicas["A100-80GB"] > 0
    assert chosen.reason.endswith("; prompts over 5k tokens only on A100-80GB"), chosen.reason


def test_the_window_skips_a_tick_with_no_reading_or_a_restart_and_drops_old_deltas():
    before = {"at": 0.0, "buckets": {"10.0": 1, "+Inf": 2}}
    now = {"at": 15.0, "buckets": {"10.0": 3, "+Inf": 6}}
    window = variants.prompt_window([], before, now, 7.0, 600.0)
    assert window == [[15.0, {"10.0": 2, "+Inf": 2}, 28.0]]  # per bucket, 4 requests
    # No histogram this tick (vLLM V0, or the read failed): nothing added, not a zero.
    assert variants.prompt_window(window, now, {"at": 30.0, "buckets": {}}, 7.0, 600.0) == window
    restarted = {"at": 30.0, "buckets": {"10.0": 0, "+Inf": 1}}
    assert variants.prompt_window(window, now, restarted, 7.0, 600.0) == window
    assert variants.prompt_window(window, None, now | {"at": 700.0}, 7.0, 600.0) == []
    assert variants.window_classes([], 100.0, 1000) == []


def test_a_bucket_empty_over_the_window_still_bounds_the_classes():
    before = {"at": 0.0, "buckets": {"10.0": 3, "100.0": 3, "+Inf": 3}}
    now = {"at": 15.0, "buckets": {"10.0": 3, "100.0": 7, "+Inf": 7}}
    window = variants.prompt_window([], before, now, 50.0, 600.0)
    assert window == [[15.0, {"100.0": 4}, 200.0]]
    shape = variants.window_classes(window, 1.0, 1000, {"10.0": 3, "100.0": 7, "+Inf": 7})
    # (10, 100], not (0, 100]: the 10-token bound is the reading's though no entry names it.
    assert [(c.name, c.shortest_prompt_tokens) for c in shape] == [("<=100", 10)]


def test_the_quota_room_is_what_the_tenant_may_still_take_plus_what_it_holds(gpu_type, a40):
    tenant = Tenant.objects.create(slug="solo", name="Solo")
    Quota.objects.create(tenant=tenant, gpu_type=a40, nominal=3, used_gpus=2)
    workload = Workload(tenant=tenant, model_name=MODEL, gpus_per_replica=1)
    rows = list(Quota.objects.select_related("tenant", "tenant__parent", "gpu_type"))
    # Holding 1 A40 of the 2 used: 1 more is free, so 2 in all; no A100 quota: no bound.
    room = variants.quota_room(workload, pool(gpu_type, a40, (2, 1), a40_max=4), rows)
    assert room == {gpu_type.pk: None, a40.pk: 2}


def test_the_placement_room_counts_replicas_that_fit_on_one_node(gpu_type, a40):
    cluster = Cluster.objects.create(name="east", api_url="http://127.0.0.1:1/east")
    seen = datetime.now(UTC)
    for name, requested in (("a40-0", 5), ("a40-1", 7)):  # 3 + 1 GPUs free
        GpuNode.objects.create(
            cluster=cluster,
            name=name,
            gpu_product="NVIDIA-A40",
            gpu_capacity=8,
            gpu_allocatable=8,
            gpu_requested=requested,
            seen_at=seen,
        )
    workload = Workload(pk=7, model_name=MODEL, gpus_per_replica=2)
    room = variants.placement_room(cluster.pk, [(workload, pool(gpu_type, a40, (1, 1), 4))])
    # One more 2-GPU replica fits (on a40-0) beside the one running; A100s: no synced node.
    assert room == {(7, a40.pk): 2}


def test_the_pool_counts_its_replicas_in_primary_replicas(gpu_type, a40):
    """A policy decides in A100 replicas: 2 A100s and 4 A40s (each about 0.3 of one) are
    worth 3.2, so a rate limit on the total (Knative: halve at most) bounds what the pool is
    worth, not its count of slower replicas, and cannot hold it above what the policy wants."""
    tenant = Tenant.objects.create(slug="team-a", name="Team A")
    cluster = Cluster.objects.create(name="east", api_url="http://127.0.0.1:1/east")
    workload = Workload.objects.create(
        tenant=tenant,
        cluster=cluster,
        namespace="team-a",
        deployment="chat",
        model_name=MODEL,
        gpu_type=gpu_type,
    )
    WorkloadVariant.objects.create(workload=workload, gpu_type=a40, deployment="chat-a40")
    policy = ScalingPolicy(min_replicas=1, max_replicas=10)
    primary = DeploymentState("team-a", "chat", 2, 2, 1)
    found = {("team-a", "chat-a40"): DeploymentState("team-a", "chat-a40", 4, 4, 4)}
    shape = [variants.mean_class(SIZES)]
    mixed = variants.observe_pool(workload, policy, primary, found, {}, shape)
    assert isinstance(mixed, variants.Pool)
    assert (mixed.combined.spec_replicas, mixed.combined.ready_replicas) == (3, 2)
    unknown = variants.observe_pool(workload, policy, primary, found, {}, None)
    assert isinstance(unknown, variants.Pool) and unknown.combined.spec_replicas == 6
    gone = variants.observe_pool(workload, policy, primary, {}, {}, shape)
    assert gone == "Deployment chat-a40 not found in namespace team-a on cluster east"

    # The mix last chose 1 A100 + 4 A40s for a total of 2; make before break keeps the
    # second A100 up until the A40s are ready. The policy's current count is its own 2 (the
    # back-test's too), not the 3.2 the kept replica makes: a scale-down stabilisation
    # window would otherwise hold the pool at what make before break left running.
    chosen = {"goal": {"A100-80GB": 1, "A40-48GB": 4}, "desired": 2}
    held = variants.observe_pool(workload, policy, primary, found, {}, shape, chosen)
    assert isinstance(held, variants.Pool) and held.combined.spec_replicas == 2
    # A Deployment set below the mix (a quota cut, a hand edit) is counted as it runs:
    # 2 A100s and 2 A40s are worth 2.6.
    cut = {("team-a", "chat-a40"): DeploymentState("team-a", "chat-a40", 2, 2, 2)}
    edited = variants.observe_pool(workload, policy, primary, cut, {}, shape, chosen)
    assert isinstance(edited, variants.Pool) and edited.combined.spec_replicas == 3


def warming_pool(a100: GpuType, a40: GpuType, a40_ready: int) -> variants.Pool:
    """3 A100s running, 4 A40s asked for, ``a40_ready`` of them ready."""
    parts = (
        variants.Part(a100, DeploymentState("team-a", "chat", 3, 3, 3), 0, 10, None),
        variants.Part(a40, DeploymentState("team-a", "chat-a40", 4, 4, a40_ready), 0, 4, 1),
    )
    return variants.Pool(parts, [], parts[0].deployment)


def test_a_type_shrinks_only_once_the_replicas_the_mix_moves_to_are_ready(gpu_type, a40):
    choice = variants.Choice({"A100-80GB": 2, "A40-48GB": 4}, "2 x A100-80GB + 4 x A40-48GB")
    held = variants.make_before_break(warming_pool(gpu_type, a40, a40_ready=1), choice)
    assert held.replicas == {"A100-80GB": 3, "A40-48GB": 4}
    assert held.reason.endswith(
        "make before break: A100-80GB kept at 3 until A40-48GB's 4 (1 ready) are ready"
    )
    ready = variants.make_before_break(warming_pool(gpu_type, a40, a40_ready=4), choice)
    assert ready == choice


REFUSAL = "0/2 nodes are available: 2 Insufficient nvidia.com/gpu"


def refused_pool(a100: GpuType, a40: GpuType, a100_ready: int = 3) -> variants.Pool:
    """3 A100s; 6 A40 pods asked for, of which the scheduler placed 2 (ready) and refused 4."""

    def pod(i: int, refused: bool) -> PodState:
        node = None if refused else "a40-0"
        return PodState(
            "team-a",
            f"chat-a40-{i}",
            {},
            "Pending" if refused else "Running",
            not refused,
            node,
            1,
            REFUSAL if refused else "",
        )

    pods = tuple(pod(i, refused=i >= 2) for i in range(6))
    parts = (
        variants.Part(a100, DeploymentState("team-a", "chat", 3, 3, a100_ready), 0, 10, None),
        variants.Part(a40, DeploymentState("team-a", "chat-a40", 6, 6, 2), 0, 6, 1, pods),
    )
    return variants.Pool(parts, list(pods), parts[0].deployment)


def test_a_type_the_scheduler_refuses_is_bounded_at_what_it_placed(gpu_type, a40):
    a40.hourly_cost = "0.50"
    found = refused_pool(gpu_type, a40)
    refused = variants.refusals(found, None, now=100.0)
    assert refused == {"A40-48GB": variants.Refused(2, 6, REFUSAL, 100.0)}
    # The inventory says 10 more A40s fit (it may not see a taint): it adds none back.
    workload = Workload(pk=7, model_name=MODEL, gpus_per_replica=1, gpu_type=gpu_type)
    placeable = {(7, a40.pk): 12}
    room = variants.bounds(workload, found, {gpu_type.pk: None, a40.pk: None}, placeable, refused)
    assert room == {gpu_type.pk: None, a40.pk: 2}
    policy = ScalingPolicy(min_replicas=1, max_replicas=10, routing="least-outstanding")
    shape = [variants.mean_class(SIZES)]
    # The mix last chosen (3 A100 + 4 A40, test_the_cheapest_mix...) does not pin the A40s
    # above what was placed: the A100s take the rest of the policy's 4.
    memory = mix.MixMemory({"A100-80GB": 3, "A40-48GB": 4}, 4)
    chosen = variants.with_refusals(
        variants.choose(workload, policy, found, 4, shape, room, memory, 100.0), refused, 100.0
    )
    assert chosen.replicas["A40-48GB"] <= 2 and chosen.replicas["A100-80GB"] >= 4
    assert chosen.reason.endswith(
        f"; A40-48GB: 4 of 6 cannot be placed ({REFUSAL}), demand moved to A100-80GB"
    ), chosen.reason


def test_a_refused_type_is_offered_again_when_placed_or_after_the_retry(gpu_type, a40):
    stored = {"A40-48GB": variants.Refused(2, 6, REFUSAL, 100.0).to_dict()}
    # Its refused pods scaled away: 2 placed, none refused. Still bounded until the retry.
    placed = pool(gpu_type, a40, (3, 2), a40_max=6)
    assert variants.refusals(placed, stored, 200.0) == {
        "A40-48GB": variants.Refused(2, 6, REFUSAL, 100.0)
    }
    assert variants.refusals(placed, stored, 100.0 + variants.UNPLACED_RETRY_S) == {}
    assert variants.refusals(placed, {"A40-48GB": {"placed": 2}}, 200.0) == {}  # unreadable
    # More placed than it was bounded at: capacity came back, offered at once.
    assert variants.refusals(pool(gpu_type, a40, (3, 3), a40_max=6), stored, 200.0) == {}


def test_make_before_break_keeps_no_pod_the_scheduler_refused(gpu_type, a40):
    # The A100s grow (1 of 3 ready) while the A40s are cut to the 2 placed: the 4 refused
    # pods are not kept up for the wait, they serve nothing.
    found = refused_pool(gpu_type, a40, a100_ready=1)
    choice = variants.Choice({"A100-80GB": 4, "A40-48GB": 2}, "4 x A100-80GB + 2 x A40-48GB")
    assert variants.make_before_break(found, choice) == choice


def test_pods_the_scheduler_refused_are_charged_to_no_quota(gpu_type, a40):
    tenant = Tenant.objects.create(slug="solo", name="Solo")
    workload = Workload(pk=7, tenant=tenant, model_name=MODEL, gpus_per_replica=1)
    found = refused_pool(gpu_type, a40)
    parts = variants.parts_state(workload, found, {"A100-80GB": 3, "A40-48GB": 2})
    assert [(p["holding"], p["warming"]) for p in parts] == [(3, 0), (2, 0)]
