"""Dashboard pages. Every page scopes what it shows through the tenant access choke point."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from scaling.models import Workload
from tenants.models import Tenant


@login_required
def fleet(request: HttpRequest) -> HttpResponse:
    tenants = Tenant.objects.for_user(request.user).select_related("parent")
    workloads = Workload.objects.for_user(request.user).select_related(
        "tenant", "cluster", "gpu_type", "policy"
    )
    return render(request, "dashboard/fleet.html", {"tenants": tenants, "workloads": workloads})
