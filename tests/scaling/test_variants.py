"""The mix step of the live loop (scaling.variants) on fixed inputs: the hysteresis against
moving replicas between types for a small saving, and each type's quota and placement room."""

from datetime import UTC, datetime
from typing import Any

import pytest

from clusters.kubernetes import DeploymentState
from clusters.models import Cluster, GpuNode
from quotas.models import GpuType, Quota
from scaling import variants
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


def choose(a100: GpuType, a40: GpuType, price: str, current: tuple[int, int]) -> dict[str, int]:
    a40.hourly_cost = price
    workload = Workload(model_name=MODEL, gpus_per_replica=1)
    policy = ScalingPolicy(min_replicas=1, max_replicas=10)
    classes = variants.request_classes(SIZES)
    found = pool(a100, a40, current, a40_max=4)
    return variants.choose(workload, policy, found, 4, classes, {}).replicas


def test_the_cheapest_mix_is_chosen_when_no_replica_has_to_move(gpu_type, a40):
    # 3 A100s and 4 A40s ($8.60/h at $0.50) serve what 4 A100s ($8.80/h) do.
    assert choose(gpu_type, a40, "0.50", (3, 4)) == {"A100-80GB": 3, "A40-48GB": 4}
    assert choose(gpu_type, a40, "0.50", (0, 0)) == {"A100-80GB": 3, "A40-48GB": 4}


def test_replicas_stay_on_their_type_for_a_saving_under_the_hysteresis(gpu_type, a40):
    # Moving one running A100 to four A40s would save 2.3 %: under HYSTERESIS, they stay.
    assert choose(gpu_type, a40, "0.50", (4, 0)) == {"A100-80GB": 4, "A40-48GB": 0}


def test_replicas_move_for_a_saving_over_the_hysteresis(gpu_type, a40):
    # At $0.30 an A40 the same move saves 11 %.
    assert choose(gpu_type, a40, "0.30", (4, 0)) == {"A100-80GB": 3, "A40-48GB": 4}


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
    mixed = variants.observe_pool(workload, policy, primary, found, {}, SIZES)
    assert isinstance(mixed, variants.Pool)
    assert (mixed.combined.spec_replicas, mixed.combined.ready_replicas) == (3, 2)
    unknown = variants.observe_pool(workload, policy, primary, found, {}, None)
    assert isinstance(unknown, variants.Pool) and unknown.combined.spec_replicas == 6
    gone = variants.observe_pool(workload, policy, primary, {}, {}, SIZES)
    assert gone == "Deployment chat-a40 not found in namespace team-a on cluster east"
