"""The live what-if in money: each curve's GPU-hours priced as the back-test prices them."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from quotas.models import GpuType
from scaling.models import WorkloadVariant
from tests.dashboard.test_whatif import form_data, setup, store_load

pytestmark = pytest.mark.django_db
__all__ = ["setup"]  # the fixture, shared with test_whatif


def whatif(client: Any, workload: Any, operator: Any) -> dict[str, Any]:
    client.force_login(operator)
    data = {**form_data(workload.policy, target=5), "window": "3600"}
    response = client.post(f"/workloads/{workload.pk}/whatif/", data)
    assert response.status_code == 200, response.content
    return response.json()


def test_a_given_price_costs_each_curve_over_the_window_and_per_hour(client, setup):
    workload = setup["a"]
    GpuType.objects.filter(pk=workload.gpu_type_id).update(hourly_cost="3.10")
    workload.refresh_from_db()
    store_load(workload, 1800)
    body = whatif(client, workload, setup["operator"])
    assert (body["price_per_gpu_hour"], body["price_source"]) == (3.1, "given")
    assert body["cost_note"] == ""
    observed, edited = body["summary"]["observed"], body["summary"]["whatif"]
    # 2 replicas x 1 GPU for the half hour recorded (less the last tick's step).
    assert observed["hours"] == pytest.approx(0.5, abs=0.01)
    assert observed["cost_usd"] == pytest.approx(observed["gpu_hours"] * 3.1, abs=1e-4)
    # Priced from GPU-hours as shown (to 0.001): a cent's tolerance per hour.
    assert observed["cost_per_hour"] == pytest.approx(2 * 3.1, abs=0.01)
    assert edited["cost_usd"] == pytest.approx(edited["gpu_hours"] * 3.1, abs=1e-4)
    assert edited["cost_usd"] != observed["cost_usd"]  # the edited policy wants more
    per_hour = edited["cost_usd"] / edited["hours"]
    assert edited["cost_text"] == f"${edited['cost_usd']:.2f} over the window, ${per_hour:.2f}/h"
    assert observed["cost_text"] == f"${observed['cost_usd']:.2f} over the window, $6.20/h"


def test_with_no_hourly_cost_the_catalogue_price_is_assumed_and_said(client, setup):
    workload = setup["a"]
    GpuType.objects.filter(pk=workload.gpu_type_id).update(hourly_cost=0)
    workload.refresh_from_db()
    store_load(workload, 1800)
    body = whatif(client, workload, setup["operator"])
    assert (body["price_per_gpu_hour"], body["price_source"]) == (2.2, "assumed")
    observed = body["summary"]["observed"]
    assert observed["cost_usd"] == pytest.approx(observed["gpu_hours"] * 2.2, abs=1e-4)
    assert observed["cost_per_hour"] == pytest.approx(4.4, abs=0.01)
    assert observed["cost_text"].endswith(", $4.40/h at an assumed $2.20/GPU-h")


def test_a_pool_of_several_gpu_types_is_not_priced_and_says_why(client, setup):
    workload = setup["a"]
    a40 = GpuType.objects.create(
        name="A40-48GB", memory_gib=48, hourly_cost="0.90", node_label="NVIDIA-A40"
    )
    WorkloadVariant.objects.create(workload=workload, gpu_type=a40, deployment="chat-a-a40")
    store_load(workload, 1800)
    body = whatif(client, workload, setup["operator"])
    for curve in body["summary"].values():
        assert curve["gpu_hours"] > 0
        assert (curve["cost_usd"], curve["cost_per_hour"], curve["cost_text"]) == (None, None, "")
    assert "several GPU types" in body["cost_note"]
    assert "A100-80GB equivalents" in body["cost_note"]


def test_the_api_schema_names_the_cost_fields(client):
    schema = client.get("/api/v1/schema/", {"format": "json"}).json()["components"]["schemas"]
    curve = schema["WhatifCurveSummary"]["properties"]
    assert {"hours", "cost_usd", "cost_per_hour", "cost_text"} <= set(curve)
    assert {"price_per_gpu_hour", "price_source", "cost_note"} <= set(
        schema["WhatifResult"]["properties"]
    )


def test_an_edit_after_the_first_asks_the_database_little(client, setup):
    """Per keystroke: the session and user, the workload with its policy, GPU type and
    variants, the operator check, the policy's check constraints in one query, and the
    stored rows' identity; their text is not read again."""
    workload = setup["a"]
    store_load(workload, 1800)
    whatif(client, workload, setup["operator"])
    data = {**form_data(workload.policy, target=6), "window": "3600"}
    with CaptureQueriesContext(connection) as queries:
        response = client.post(f"/workloads/{workload.pk}/whatif/", data)
    assert response.status_code == 200
    sql = [q["sql"] for q in queries.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert not any('"data"' in q for q in sql), sql
    assert len(sql) <= 7, "\n".join(sql)


def test_a_gpu_type_with_no_price_at_all_is_not_priced_and_says_why(client, setup):
    workload = setup["a"]
    GpuType.objects.filter(pk=workload.gpu_type_id).update(name="X1-16GB", hourly_cost=0)
    workload.refresh_from_db()
    store_load(workload, 600)
    body = whatif(client, workload, setup["operator"])
    assert (body["price_per_gpu_hour"], body["price_source"]) == (0.0, "assumed")
    assert body["summary"]["whatif"]["cost_usd"] is None
    assert body["cost_note"] == (
        "No cost: no price per GPU-hour for X1-16GB (set its hourly cost)."
    )
