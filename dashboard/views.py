"""Dashboard pages. Every page scopes what it shows through the tenant access choke points
(``Tenant.objects.for_user``, ``Workload.objects.for_user``); a workload or tenant the user may
not see is a 404, like one that does not exist."""

from __future__ import annotations

import copy
import json
import math
import time
from collections import defaultdict
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Max, Prefetch
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods

from clusters.models import GpuNode
from clusters.placement import NodeGpus, placement
from controlplane.metrics import PROCESS_STARTED_AT
from dashboard import policies, ranges
from dashboard import preview as what_if
from dashboard.forms import DecisionFilter, PolicyForm
from quotas.models import GpuType
from scaling import whatif as live_whatif
from scaling.loop import stalled_after_s, stalled_loops
from scaling.models import Decision, ScalingPolicy, Workload, WorkloadVariant
from tenants.models import Tenant

RECENT_DECISIONS = 20
DECISIONS_PER_PAGE = 50
# A workload's further GPU types, for its rows and page (one query for a whole list).
VARIANTS = Prefetch("variants", WorkloadVariant.objects.select_related("gpu_type"))


def _loop_health() -> dict[str, Any]:
    """The "control loop not running" banner and the age past which an observed status is
    marked old (the /readyz rule: a few control-loop intervals, docs/control-loop.md)."""
    now = datetime.now(UTC)
    stalled = stalled_loops(now, PROCESS_STARTED_AT)
    ticked = [a.last_tick_at for a in stalled if a.last_tick_at is not None]
    return {
        "loop_stalled": stalled,
        "loop_stalled_since": min(ticked) if ticked else None,
        "stale_before": now - timedelta(seconds=stalled_after_s()),
    }


def _decisions(user: Any) -> Any:
    scoped = Workload.objects.for_user(user)
    # The primary type and variants: a mixed pool's card names its counts' unit.
    return (
        Decision.objects.filter(workload__in=scoped)
        .select_related("workload", "workload__tenant", "workload__gpu_type")
        .prefetch_related(Prefetch("workload__variants", WorkloadVariant.objects.all()))
    )


@login_required
def fleet(request: HttpRequest) -> HttpResponse:
    tenants = Tenant.objects.for_user(request.user).select_related("parent")
    workloads = list(
        Workload.objects.for_user(request.user)
        .select_related("tenant", "cluster", "gpu_type", "policy")
        .prefetch_related(VARIANTS)
    )
    inventory = _inventory()
    hosts = sum(row["nodes"] for row in inventory)
    context = {
        "tenants": tenants,
        "workloads": workloads,
        "usage": policies.usage(workloads, [t.pk for t in tenants]),
        "decisions": _decisions(request.user)[:RECENT_DECISIONS],
        "inventory": inventory,
        # The heatmap's box sized for the synced nodes (one row per host), as fleet.js sizes
        # it: the first frame then does not push the page down under the reader's pointer.
        "heatmap_height": max(200, 26 * hosts + 60) if hosts else None,
        **_loop_health(),
    }
    return render(request, "dashboard/fleet.html", context)


def _inventory() -> list[dict[str, Any]]:
    """GPUs per cluster and GPU type as the last inventory sync saw the nodes, with where a
    replica can still go (clusters.placement): stranded GPUs are counted for the largest
    replica the cluster's workloads of that type run."""
    names = dict(GpuType.objects.values_list("node_label", "name"))
    largest_replica = {
        (row["cluster__name"], row["gpu_type__node_label"]): row["size"]
        for row in Workload.objects.values("cluster__name", "gpu_type__node_label").annotate(
            size=Max("gpus_per_replica")
        )
    }
    groups: dict[tuple[str, str], list[NodeGpus]] = defaultdict(list)
    synced: dict[tuple[str, str], datetime] = {}
    rows = GpuNode.objects.filter(cluster__enabled=True).values_list(
        "cluster__name",
        "gpu_product",
        "gpu_capacity",
        "gpu_allocatable",
        "gpu_requested",
        "ready",
        "seen_at",
    )
    for cluster, product, capacity, allocatable, requested, ready, seen_at in rows:
        key = (cluster, product)
        groups[key].append(NodeGpus(capacity, allocatable, requested, ready))
        synced[key] = max(synced.get(key, seen_at), seen_at)
    return [
        {
            "cluster__name": cluster,
            "gpu_product": product,
            "gpu_type": names.get(product, product),
            "seen_at": synced[(cluster, product)],
            **asdict(placement(nodes, largest_replica.get((cluster, product), 0))),
        }
        for (cluster, product), nodes in sorted(groups.items())
    ]


@login_required
def tenant(request: HttpRequest, slug: str) -> HttpResponse:
    found = get_object_or_404(Tenant.objects.for_user(request.user), slug=slug)
    scope = Tenant.objects.filter(pk=found.pk) | Tenant.objects.filter(parent=found)
    workloads = list(
        Workload.objects.for_user(request.user)
        .filter(tenant__in=scope)
        .select_related("tenant", "cluster", "gpu_type", "policy")
        .prefetch_related(VARIANTS)
    )
    context = {
        "tenant": found,
        "workloads": workloads,
        "usage": policies.usage(workloads, scope.values_list("pk", flat=True)),
        "decisions": _decisions(request.user).filter(workload__tenant__in=scope)[:50],
        **_loop_health(),
    }
    return render(request, "dashboard/tenant.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def workload(request: HttpRequest, pk: int) -> HttpResponse:
    found = get_object_or_404(
        Workload.objects.for_user(request.user)
        .select_related("tenant", "cluster", "gpu_type", "policy")
        .prefetch_related(VARIANTS),
        pk=pk,
    )
    policy = found.policy_or_none
    can_edit = (
        policy is not None
        and Workload.objects.for_user(request.user, min_role="operator").filter(pk=pk).exists()
    )
    if request.method == "POST":
        if not can_edit or policy is None:
            return HttpResponse("Only operators of this tenant may edit its policy.", status=403)
        return _save_policy(request, found, PolicyForm(request.POST, instance=policy))
    form = PolicyForm(instance=policy) if can_edit else None
    return _workload_page(request, found, form, can_edit)


def _workload_page(
    request: HttpRequest,
    found: Workload,
    form: PolicyForm | None,
    can_edit: bool,
    status: int = 200,
    conflict: policies.Conflict | None = None,
) -> HttpResponse:
    policy = found.policy_or_none
    context = {
        "workload": found,
        "status": found.public_status,
        "gpu_types": _gpu_types(found),
        "policy": policy,
        "policy_view": policies.policy_view(policy).as_dict() if policy else None,
        "form": form,
        "can_edit": can_edit,
        "conflict": conflict,
        "decisions": found.decisions.all()[:RECENT_DECISIONS],
        "traces": what_if.TRACES,
        "whatif_windows": {"900": "15 min", "3600": "1 hour", "21600": "6 hours"},
        "tolerance_defaults": policies.tolerance_defaults(),
        "observed_unavailable": what_if.observed_unavailable(found),
        **_loop_health(),
    }
    return render(request, "dashboard/workload.html", context, status=status)


def _gpu_types(found: Workload) -> list[dict[str, Any]]:
    """Each GPU type of a workload with variants (none without): its Deployment, bounds, and
    what the latest evaluation saw and set (scaling.status.TypeStatus), the primary first."""
    variants = list(found.variants.all())
    if not variants:
        return []
    status = found.public_status
    seen = {t.gpu_type: t for t in status.types} if status is not None else {}
    policy = found.policy_or_none
    top = policy.max_replicas if policy else None
    rows: list[tuple[str, str, int | None, int | None]] = [
        (found.gpu_type.name, found.deployment, None, top)
    ]
    rows += [(v.gpu_type.name, v.deployment, v.min_replicas, v.max_replicas) for v in variants]
    return [
        {
            "name": name,
            "deployment": deployment,
            "primary": index == 0,
            "min": low,
            "max": high,
            "observed": seen.get(name),
        }
        for index, (name, deployment, low, high) in enumerate(rows)
    ]


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def _save_policy(request: HttpRequest, found: Workload, form: PolicyForm) -> HttpResponse:
    """Validate (the model's full_clean), then save unless the version moved on: the editor
    gets a conflict naming what changed, never a silent overwrite."""
    if not form.is_valid():
        if _wants_json(request):
            return JsonResponse({"errors": form.errors.get_json_data()}, status=400)
        return _workload_page(request, found, form, True, status=400)
    conflict = policies.save_policy(
        form.instance,
        form.cleaned_data["version"],
        form.loaded_dict(),
        request.user,
        form.cleaned_data.get("reason", ""),
    )
    if conflict is not None:
        return _conflict(request, found, form, conflict)
    view = policies.policy_view(form.instance).as_dict()
    if _wants_json(request):
        loaded = PolicyForm.loaded_values(form.instance)
        return JsonResponse({"version": form.instance.version, "policy": view, "loaded": loaded})
    return redirect("workload", pk=found.pk)


def _conflict(
    request: HttpRequest, found: Workload, form: PolicyForm, conflict: policies.Conflict
) -> HttpResponse:
    message = (
        f"Someone saved version {conflict.stored_version} of this policy while you were "
        "editing. Your values are kept below; submit again to save them over theirs, or "
        "reload to start from theirs."
    )
    changed = {k: {"yours_loaded": a, "stored": b} for k, (a, b) in conflict.changed.items()}
    # The re-shown form keeps the user's values but carries the stored version: a second
    # submit is a deliberate choice. The page around it (chart lines) shows what is stored.
    stored = ScalingPolicy.objects.get(pk=form.instance.pk)
    if _wants_json(request):
        body = {
            "message": message,
            "version": stored.version,
            "changed": changed,
            "loaded": PolicyForm.loaded_values(stored),
        }
        return JsonResponse(body, status=409)
    found.policy = stored
    data = request.POST.copy()
    data["version"] = str(stored.version)
    data["loaded"] = json.dumps(PolicyForm.loaded_values(stored))
    rebound = PolicyForm(data, instance=ScalingPolicy.objects.get(pk=stored.pk))
    return _workload_page(request, found, rebound, True, status=409, conflict=conflict)


@login_required
@require_http_methods(["POST"])
def preview(request: HttpRequest, pk: int) -> HttpResponseBase:
    """Back-test the edited policy (not saved) against the stored one; streams progress."""
    found = get_object_or_404(
        Workload.objects.for_user(request.user).select_related("gpu_type", "policy", "cluster"),
        pk=pk,
    )
    if not Workload.objects.for_user(request.user, min_role="operator").filter(pk=pk).exists():
        return HttpResponse("Previews are for operators of this tenant.", status=403)
    stored = get_object_or_404(ScalingPolicy, workload=found)
    form = PolicyForm(request.POST, instance=ScalingPolicy.objects.get(pk=stored.pk))
    trace = request.POST.get("trace", what_if.OBSERVED)
    trace_error = "" if trace in what_if.TRACES else "Pick one of the listed traces."
    if trace == what_if.OBSERVED:
        trace_error = what_if.observed_unavailable(found)
    if not form.is_valid() or trace_error:
        errors = form.errors.get_json_data() if form.errors else {}
        if trace_error:
            errors["trace"] = [{"message": trace_error, "code": "invalid"}]
        return JsonResponse({"errors": errors}, status=400)
    body = what_if.stream(
        form.instance.engine_params(),
        stored.engine_params(),
        what_if.trace_source(found, trace, time.time()),
        what_if.replay_settings(found, stored),
    )
    return StreamingHttpResponse(body, content_type="application/x-ndjson")


@login_required
@require_http_methods(["POST"])
def whatif(request: HttpRequest, pk: int) -> HttpResponse:
    """The live what-if: the edited policy (not saved; the save's validation, 400 naming the
    fields) replayed on this workload's stored signals over ``window`` seconds. JSON."""
    started = time.perf_counter()
    found = get_object_or_404(
        Workload.objects.for_user(request.user)
        .select_related("gpu_type", "policy")
        .prefetch_related("variants"),  # the form's and the cost's question, asked once
        pk=pk,
    )
    if not Workload.objects.for_user(request.user, min_role="operator").filter(pk=pk).exists():
        return HttpResponse("Previews are for operators of this tenant.", status=403)
    stored = getattr(found, "policy", None)
    if stored is None:
        raise Http404("This workload has no policy.")
    # The form edits a copy: ``stored`` stays as saved, to compare with (history_mismatch).
    form = PolicyForm(request.POST, instance=copy.copy(stored))
    window = request.POST.get("window", "3600")
    errors = form.errors.get_json_data() if not form.is_valid() else {}
    if not errors:
        mismatch = live_whatif.history_mismatch(stored, form.instance)
        errors = {k: [{"message": v, "code": "invalid"}] for k, v in mismatch.items()}
    if window not in live_whatif.WINDOWS:
        errors["window"] = [{"message": "Pick 15 minutes, 1 hour or 6 hours.", "code": "invalid"}]
    if errors:
        return JsonResponse({"errors": errors}, status=400)
    body = live_whatif.signal_whatif(found, form.instance, live_whatif.WINDOWS[window], time.time())
    body["server_ms"] = round(1000 * (time.perf_counter() - started), 1)
    return JsonResponse(body)


@login_required
@require_http_methods(["GET"])
def history(request: HttpRequest, pk: int) -> HttpResponse:
    """The workload's stored signals from ``since`` to ``until`` (Unix seconds; ``until``
    defaults to now, the span is at most a day), at most ~900 points per series, and the
    decisions of the window. Members of the tenant, like the page. JSON."""
    found = get_object_or_404(Workload.objects.for_user(request.user), pk=pk)
    now = time.time()
    try:
        until = float(request.GET.get("until", now))
        since = float(request.GET["since"])
    except (KeyError, ValueError):
        return JsonResponse({"errors": {"since": ["Unix seconds, required."]}}, status=400)
    until = min(until, now)
    if not (math.isfinite(since) and math.isfinite(until)) or since >= until:
        return JsonResponse({"errors": {"since": ["Must be before until."]}}, status=400)
    since = max(since, until - ranges.MAX_SPAN_S)
    return JsonResponse(ranges.stored_range(found, since, until))


@login_required
def decisions(request: HttpRequest) -> HttpResponse:
    filters = DecisionFilter(request.user, request.GET or None)
    found = filters.apply(_decisions(request.user))
    page = Paginator(found, DECISIONS_PER_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"filters": filters, "page": page, "query": query.urlencode(), **_loop_health()}
    return render(request, "dashboard/decisions.html", context)
