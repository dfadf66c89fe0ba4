"""Back-test jobs: started on a policy (``POST /policies/<id>/backtests/``, in
``api.views.scaling``), then listed, polled and deleted here. Members of the workload's tenant
read them; operators and admins delete (a queued or running job is cancelled: its worker
stops at its next progress write)."""

from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from rest_framework import serializers, status
from rest_framework.generics import get_object_or_404
from rest_framework.request import Request
from rest_framework.response import Response

from api.concurrency import check_if_match
from api.filters import id_filter
from api.serializers.backtests import BacktestJobDetailSerializer, BacktestJobSerializer
from api.views.base import ReadOnlyScopedViewSet
from scaling.models import BacktestJob
from tenants.models import Role


class BacktestJobViewSet(ReadOnlyScopedViewSet):
    """Back-tests of the policies you can see, newest first. The list leaves out the
    policy snapshot and the result; the detail has them."""

    write_role = Role.OPERATOR
    filter_fields = {
        "status": ("status", serializers.ChoiceField(choices=BacktestJob.Status.choices)),
        "policy": ("policy_id", id_filter("Policy id.")),
        "workload": ("policy__workload_id", id_filter("Workload id.")),
        "tenant": ("policy__workload__tenant__slug", serializers.CharField(help_text="Slug.")),
    }
    ordering_fields = ["created_at", "id", "status"]
    ordering = ["-created_at", "-id"]

    def get_serializer_class(self) -> type[BacktestJobSerializer]:
        return BacktestJobSerializer if self.action == "list" else BacktestJobDetailSerializer

    def get_queryset(self) -> QuerySet[BacktestJob]:
        found = self.scoped(BacktestJob.objects.all(), "policy__workload__tenant")
        found = found.select_related("policy__workload__tenant", "created_by")
        if self.action == "list":
            found = found.defer("params", "replay", "result")
        return found

    def tenant_id_of(self, obj: Any) -> int:
        return int(obj.policy.workload.tenant_id)

    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Delete the job; a queued or running one is cancelled."""
        with transaction.atomic():
            queryset = self.get_queryset().select_for_update(of=("self",))
            job = get_object_or_404(queryset, pk=self.kwargs["pk"])
            self.check_object_permissions(request, job)
            check_if_match(request, self.etag(job))
            job.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
