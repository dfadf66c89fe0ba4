"""Check constraints decided in Python (api.validation) agree with the database's verdict,
for every check constraint of the models the API writes, over random values with NULLs."""

import random
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import models

from api.validation import _holds
from clusters.models import Cluster
from quotas.models import GpuType, Quota
from scaling.models import BacktestJob, ScalingPolicy
from tenants.models import Membership, Tenant

pytestmark = pytest.mark.django_db

CANDIDATES: dict[type, list[Any]] = {
    models.FloatField: [None, -1.5, -0.0, 0.0, 0.2, 1.0, 7.5, 1e9],
    models.PositiveIntegerField: [None, 0, 1, 2, 5, 10, 50],
    models.DecimalField: [None, -1, 0, 2],
    models.CharField: ["", "x", "hpa", "viewer", "owner"],
    models.URLField: ["", "http://127.0.0.1/x"],
}


def random_instance(model: type[models.Model], rng: random.Random) -> models.Model:
    instance = model()
    for field in model._meta.concrete_fields:
        for kind, values in CANDIDATES.items():
            if type(field) is kind:
                setattr(instance, field.attname, rng.choice(values))
                break
    return instance


def database_says(constraint: Any, instance: models.Model) -> bool:
    try:
        constraint.validate(type(instance), instance)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize(
    "model", [ScalingPolicy, Quota, GpuType, Tenant, Membership, Cluster, BacktestJob]
)
def test_python_and_the_database_agree_on_every_check(model: type[models.Model]) -> None:
    rng = random.Random(7)
    checks = [c for c in model._meta.constraints if isinstance(c, models.CheckConstraint)]
    decided = 0
    for _ in range(40):
        instance = random_instance(model, rng)
        for constraint in checks:
            verdict = _holds(constraint.condition, instance)
            if verdict is not None:
                decided += 1
                assert verdict == database_says(constraint, instance), (
                    constraint.name,
                    vars(instance),
                )
    assert decided > 0 or model in (Tenant,)  # the slug regex is left to the database


# --- what a body, a page and an ordering may say -------------------------------------------


@pytest.fixture
def staff(fleet: Any, client_for: Any) -> Any:
    return client_for(fleet.users["staff"])


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"version": 99}, "version"),
        ({"tenant": "globex"}, "tenant"),
        ({"updated_at": "2020-01-01T00:00:00Z", "target": 3}, "updated_at"),
        ({"id": 12345}, "id"),
    ],
)
def test_a_read_only_field_in_a_patch_is_a_400_naming_it(
    fleet: Any, staff: Any, body: dict[str, Any], field: str
) -> None:
    from history.models import Change

    policy = fleet.workloads["a"].policy
    url = f"/api/v1/policies/{policy.pk}/"
    response = staff.patch(url, body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["errors"][field] == [
        "Read-only: it cannot be set or changed; leave it out of the body."
    ]
    stored = ScalingPolicy.objects.get(pk=policy.pk)
    assert (stored.version, stored.target) == (policy.version, policy.target)
    assert not Change.objects.exists()


def test_a_read_only_field_on_create_is_refused(fleet: Any, staff: Any) -> None:
    body = {"name": "L4", "memory_gib": 24, "node_label": "NVIDIA-L4", "id": 7}
    response = staff.post("/api/v1/gpu-types/", body, format="json")
    assert response.status_code == 400 and "id" in response.json()["errors"]


def test_a_representation_sent_back_unchanged_with_put_is_fine(fleet: Any, staff: Any) -> None:
    url = f"/api/v1/quotas/{fleet.quotas['a'].pk}/"
    body = staff.get(url).json()
    body["nominal"] = 9
    assert staff.put(url, body, format="json").status_code == 200
    body["over_since"] = "2020-01-01T00:00:00Z"
    response = staff.put(url, body, format="json")
    assert response.status_code == 400 and "over_since" in response.json()["errors"]


def test_a_page_past_the_last_is_a_400_naming_page(fleet: Any, staff: Any) -> None:
    response = staff.get("/api/v1/policies/?page=999")
    assert response.status_code == 400, response.content
    assert response.json()["errors"]["page"] == [
        "Page 999 is past the last page, 1 (3 items in all)."
    ]
    assert staff.get("/api/v1/policies/?page=1").status_code == 200


@pytest.mark.parametrize("ordering", ["secret", "-secret", "id,secret", "workload__tenant__name"])
def test_an_unknown_ordering_is_a_400_naming_the_allowed_fields(
    fleet: Any, staff: Any, ordering: str
) -> None:
    response = staff.get(f"/api/v1/policies/?ordering={ordering}")
    assert response.status_code == 400, response.content
    message = response.json()["errors"]["ordering"][0]
    assert ordering.split(",")[-1] in message and "updated_at" in message


def test_allowed_orderings_still_order(fleet: Any, staff: Any) -> None:
    ids = [row["id"] for row in staff.get("/api/v1/policies/?ordering=-id").json()["results"]]
    assert ids == sorted(ids, reverse=True) and len(ids) == 3


@pytest.mark.parametrize("body", [{}, {"target": 8.0}, {"target": 8, "mode": "dry-run"}])
def test_a_patch_that_changes_nothing_keeps_the_version_and_records_no_history(
    fleet: Any, staff: Any, body: dict[str, Any]
) -> None:
    from history.models import Change

    policy = fleet.workloads["a"].policy
    url = f"/api/v1/policies/{policy.pk}/"
    response = staff.patch(url, body, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["version"] == policy.version
    assert response["ETag"] == f'"v{policy.version}"'
    stored = ScalingPolicy.objects.get(pk=policy.pk)
    assert (stored.version, stored.updated_at) == (policy.version, policy.updated_at)
    assert not Change.objects.exists()
    changed = staff.patch(url, {"target": 9}, format="json").json()
    assert changed["version"] == policy.version + 1
    assert Change.objects.count() == 1


# --- numbers bounded to what they mean, metric names Prometheus can hold --------------------


def policy_patch(staff: Any, fleet: Any, body: dict[str, Any]) -> Any:
    return staff.patch(f"/api/v1/policies/{fleet.workloads['a'].policy.pk}/", body, format="json")


@pytest.mark.parametrize(
    "body",
    [
        {"slo_ttft_p95_s": 0},
        {"slo_ttft_p95_s": -1},
        {"max_concurrency": 0},
        {"max_replicas": 1_000_000_000},
        {"metric": "vllm:kv_cache_usage_perc", "target": 1e308},
        {"metric": "DCGM_FI_DEV_GPU_UTIL", "target": 150},
        {"metric": "num requests"},
        {"metric": 'x{y="1"}'},
        {"metric": 'a"b'},
        {"metric": "9lives"},
        {"max_scale_down_rate": 0},
        {"scale_down_max_percent": 250},
        {"scale_up_period_s": 0},
        {"target": 1e12},
        {"routing": "fastest"},
        {"routing": "Round-Robin"},
    ],
)
def test_meaningless_policy_values_are_400_naming_the_field(
    fleet: Any, staff: Any, body: dict[str, Any]
) -> None:
    policy = fleet.workloads["a"].policy
    response = policy_patch(staff, fleet, body)
    assert response.status_code == 400, response.content
    assert set(response.json()["errors"]) & set(body), response.json()
    assert ScalingPolicy.objects.get(pk=policy.pk).version == policy.version


def test_every_bounded_policy_field_refuses_both_sides_of_its_range(fleet: Any, staff: Any) -> None:
    from scaling.models import POLICY_BOUNDS

    for name, bound in POLICY_BOUNDS.items():
        integer = isinstance(ScalingPolicy._meta.get_field(name), models.PositiveIntegerField)
        above = int(bound.high) + 1 if integer else bound.high * 1.5
        below = bound.low if bound.above else bound.low - 1
        for value in (above, below):
            if value < 0 and integer:
                continue  # a negative integer is refused as such already
            body = (
                {name: value, "max_replicas": 10_000} if name == "min_replicas" else {name: value}
            )
            response = policy_patch(staff, fleet, body)
            assert response.status_code == 400, (name, value, response.content)
            assert name in response.json()["errors"], (name, value)
        inside = int(bound.high) if integer else bound.high
        if name not in {"target", "min_replicas"}:  # (target: bounded by its metric too)
            response = policy_patch(staff, fleet, {name: inside, "min_replicas": 1})
            assert response.status_code == 200, (name, inside, response.content)


def test_a_ratio_target_summed_over_replicas_may_exceed_one(fleet: Any, staff: Any) -> None:
    body = {"metric": "vllm:kv_cache_usage_perc", "aggregation": "total", "target": 3.0}
    assert policy_patch(staff, fleet, body).status_code == 200
    response = policy_patch(staff, fleet, {"target": 11.0})  # max_replicas is 10
    assert response.status_code == 400
    assert "can never be reached" in response.json()["errors"]["target"][0]


def test_the_database_refuses_out_of_range_values_too(fleet: Any) -> None:
    from django.db import IntegrityError, transaction

    from scaling.models import Workload

    cases: list[tuple[type[models.Model], dict[str, Any]]] = [
        (ScalingPolicy, {"max_replicas": 1_000_000_000}),
        (ScalingPolicy, {"metric": 'x{y="1"}'}),
        (ScalingPolicy, {"slo_ttft_p95_s": 0.0}),
        (Quota, {"nominal": 10_000_000}),
        (GpuType, {"memory_gib": 100_000}),
        (Workload, {"gpus_per_replica": 100_000}),
    ]
    for model, values in cases:
        with pytest.raises(IntegrityError), transaction.atomic():
            model._default_manager.all().update(**values)


@pytest.mark.parametrize(
    ("url", "body", "field"),
    [
        ("/api/v1/quotas/{quota}/", {"nominal": 10_000_000}, "nominal"),
        (
            "/api/v1/quotas/{quota}/",
            {"max_replicas_per_workload": 10**9},
            "max_replicas_per_workload",
        ),
        ("/api/v1/quotas/{quota}/", {"reclaim_grace_s": 10**9}, "reclaim_grace_s"),
        ("/api/v1/gpu-types/{gpu}/", {"memory_gib": 10**6}, "memory_gib"),
        ("/api/v1/gpu-types/{gpu}/", {"relative_throughput": 1e308}, "relative_throughput"),
        ("/api/v1/gpu-types/{gpu}/", {"hourly_cost": 999999}, "hourly_cost"),
        ("/api/v1/workloads/{workload}/", {"gpus_per_replica": 10**6}, "gpus_per_replica"),
    ],
)
def test_quota_gpu_type_and_workload_numbers_are_bounded(
    fleet: Any, staff: Any, url: str, body: dict[str, Any], field: str
) -> None:
    target = url.format(
        quota=fleet.quotas["a"].pk, gpu=fleet.gpu.pk, workload=fleet.workloads["a"].pk
    )
    response = staff.patch(target, body, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["errors"]


def test_a_backtest_duration_is_bounded(fleet: Any, staff: Any) -> None:
    url = f"/api/v1/policies/{fleet.workloads['a'].policy.pk}/backtests/"
    response = staff.post(url, {"duration_s": 1e12}, format="json")
    assert response.status_code == 400 and "duration_s" in response.json()["errors"]


def test_a_misspelt_metric_is_saved_with_a_warning_naming_the_likely_one(
    fleet: Any, staff: Any
) -> None:
    response = policy_patch(staff, fleet, {"metric": "vllm:num_requests_runing"})
    assert response.status_code == 200, response.content
    (warning,) = response.json()["warnings"]
    assert "vllm:num_requests_runing is not a series" in warning
    assert "Did you mean vllm:num_requests_running?" in warning
    detail = staff.get(f"/api/v1/policies/{fleet.workloads['a'].policy.pk}/").json()
    assert detail["warnings"] == [warning]
    listed = staff.get("/api/v1/policies/").json()["results"]
    assert [p["warnings"] for p in listed if p["id"] == detail["id"]] == [[warning]]
    fixed = policy_patch(staff, fleet, {"metric": "vllm:num_requests_running"})
    assert fixed.json()["warnings"] == []


def test_a_max_metric_age_under_the_loop_interval_is_saved_with_a_warning(
    fleet: Any, staff: Any, settings: Any
) -> None:
    settings.CONTROL_LOOP_INTERVAL = 5.0
    (warning,) = policy_patch(staff, fleet, {"max_metric_age_s": 3}).json()["warnings"]
    assert "shorter than the control loop's interval (5 s)" in warning
    assert policy_patch(staff, fleet, {"max_metric_age_s": 5}).json()["warnings"] == []


def test_routing_takes_the_protocols_strategies_which_the_simulator_serves(
    fleet: Any, staff: Any
) -> None:
    from clusters.pool import ROUTING_STRATEGIES
    from simulator.pool import ROUTING_STRATEGIES as SIMULATED

    assert set(SIMULATED) == set(ROUTING_STRATEGIES)
    for routing in (*ROUTING_STRATEGIES, ""):
        response = policy_patch(staff, fleet, {"routing": routing})
        assert response.status_code == 200, response.content
        assert response.json()["routing"] == routing
