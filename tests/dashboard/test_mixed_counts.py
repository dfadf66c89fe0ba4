"""A mixed pool's replica counts as an operator reads them (dashboard.replicas): the per-type
counts lead and the policy's total names its unit, on server-rendered and live-added decision
cards alike, in the latest evaluation, the fleet rows and the policy form's bounds; a workload
on one GPU type reads as before."""

from __future__ import annotations

import html
import re
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from dashboard import frames, replicas
from quotas.models import GpuType
from scaling.engine import mix
from scaling.models import Decision, Workload, WorkloadVariant
from scaling.status import TypeStatus, WorkloadStatus

MIX_LINE = mix.explain(
    mix.Mix({"A100-80GB": 1, "A40-48GB": 2}, 4.1),
    {"A100-80GB": mix.Mix({"A100-80GB": 4, "A40-48GB": 0}, 8.8)},
)
REASON = f"first decision of policy v3: {MIX_LINE}; policy: demand 7.6 replicas"


def test_counts_read_as_machines_per_type():
    assert replicas.counts_text([]) == "0 replicas"
    assert replicas.counts_text([("A100-80GB", 1), ("L4-24GB", 0), ("A40-48GB", 2)]) == (
        "1 \u00d7 A100-80GB + 2 \u00d7 A40-48GB"
    )


def text(body: str) -> str:
    """The page's text as a reader sees it (tags out, whitespace collapsed)."""
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body)))


@pytest.fixture
def mixed(team_a: Any, cluster: Any, gpu_type: GpuType, make_workload: Any) -> Workload:
    a40 = GpuType.objects.create(
        name="A40-48GB", memory_gib=48, hourly_cost="0.30", node_label="NVIDIA-A40"
    )
    found: Workload = make_workload(team_a, cluster, gpu_type, "chat")
    WorkloadVariant.objects.create(workload=found, gpu_type=a40, deployment="chat-a40")
    now = timezone.now()
    found.status = WorkloadStatus(
        at=now,
        outcome="applied",
        reason=REASON,
        policy_version=1,
        algorithm="hpa",
        current=2,
        raw_desired=3,
        desired=3,
        since=now,
        evaluations=1,
        types=(
            TypeStatus("A100-80GB", "chat", 2, 1, current=2),
            TypeStatus("A40-48GB", "chat-a40", 0, 2, current=0),
        ),
        mix=MIX_LINE,
    ).to_dict()
    found.desired_replicas = 3
    found.observed_at = now
    found.save()
    return found


TYPES = [
    TypeStatus("A100-80GB", "chat", 2, 1, current=2).to_dict(),
    TypeStatus("A40-48GB", "chat-a40", 0, 2, current=0).to_dict(),
]


def decide(
    workload: Workload, reason: str, current: int, final: int, types: list | None = None
) -> Decision:
    """A Decision as the loop records one (a mixed pool's with each type's counts)."""
    return Decision.objects.create(
        workload=workload,
        metrics={"values": [], **({"types": types} if types else {})},
        policy=workload.policy,
        policy_version=1,
        at=timezone.now() - timedelta(seconds=5),
        algorithm="hpa",
        current_replicas=current,
        raw_desired_replicas=final,
        final_replicas=final,
        outcome="applied",
        reason=reason,
    )


@pytest.mark.django_db
def test_a_mixed_pools_cards_lead_with_the_types_and_name_the_totals_unit(
    client, mixed, make_user, team_a, cluster, gpu_type, make_workload
):
    plain = make_workload(team_a, cluster, gpu_type, "plain")
    decide(mixed, REASON, 24, 8, TYPES)
    decide(mixed, "mix held: no mix within the bounds; policy: hold", 8, 8)  # no types
    decide(plain, "Scaled because of load.", 1, 2)
    client.force_login(make_user("viewer", team_a, "viewer"))
    card = "→ 1 \u00d7 A100-80GB + 2 \u00d7 A40-48GB policy total 24 → 8 A100-80GB-equivalents"
    for page in ("/", f"/workloads/{mixed.pk}/", "/decisions/"):
        shown = text(client.get(page).content.decode())
        assert card in shown, page
    fleet = text(client.get("/").content.decode())
    assert "team-a/plain Applied 1 → 2 hpa" in fleet  # one GPU type: plain replicas, no unit

    # The live feed's card carries the same words (live.js decisionItem draws them).
    live = [frames.decision_dict(d) for d in Decision.objects.order_by("pk")]
    assert {k: live[0][k] for k in ("wanted", "unit", "current", "final")} == {
        "wanted": "1 \u00d7 A100-80GB + 2 \u00d7 A40-48GB",
        "unit": "A100-80GB-equivalents",
        "current": 24,
        "final": 8,
    }
    # A held mix set no per-type counts: none are made up, the total keeps its unit.
    assert (live[1]["wanted"], live[1]["unit"]) == ("", "A100-80GB-equivalents")
    assert (live[2]["wanted"], live[2]["unit"]) == ("", "")


@pytest.mark.django_db
def test_the_latest_evaluation_rows_and_policy_bounds_name_the_unit(
    client, mixed, make_user, team_a
):
    client.force_login(make_user("operator", team_a, "operator"))
    page = client.get(f"/workloads/{mixed.pk}/").content.decode()
    shown = text(page)
    assert "Replicas 2 \u00d7 A100-80GB → 1 \u00d7 A100-80GB + 2 \u00d7 A40-48GB" in shown
    assert "Policy total 2 → 3 A100-80GB-equivalents (algorithm asked 3)" in shown
    assert re.search(r"Observed \d+ ready, \d+ warming of 3 A100-80GB-equivalents \(each", shown)
    helped = re.search(r'data-help-for="max_replicas">([^<]+)<', page)
    assert helped is not None
    assert html.unescape(helped[1]).startswith(
        "In A100-80GB-equivalents: the most of the policy's total"
    )
    row = text(client.get("/").content.decode())
    # Ready: the machines of every type (2 A100 + 0 A40), not the primary-equivalents total;
    # warming comes with the first live frame. Desired names its unit.
    assert "A40-48GB 0/2 2 \u2013 3 A100-80GB-equivalents" in row
    assert (
        f"{mixed.policy.min_replicas}\u2013{mixed.policy.max_replicas} A100-80GB-equivalents" in row
    )


@pytest.mark.django_db
def test_a_workload_on_one_gpu_type_reads_plain_replicas(
    client, team_a, cluster, gpu_type, make_workload, make_user
):
    plain = make_workload(team_a, cluster, gpu_type, "plain")
    client.force_login(make_user("operator", team_a, "operator"))
    page = client.get(f"/workloads/{plain.pk}/").content.decode()
    assert "equivalents" not in page and 'data-help-for="max_replicas"' not in page
