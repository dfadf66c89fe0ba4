"""REST API v1: the resources, the declarative configuration, the schema and its docs."""

from django.http import HttpRequest, JsonResponse
from django.urls import URLPattern, URLResolver, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import SimpleRouter

from api.views.backtests import BacktestJobViewSet
from api.views.config import ConfigView
from api.views.fleet import ClusterViewSet, GpuTypeViewSet, QuotaViewSet
from api.views.scaling import DecisionViewSet, PolicyViewSet, WorkloadViewSet
from api.views.tenancy import MembershipViewSet, NamespaceViewSet, TenantViewSet

router = SimpleRouter()
router.register("tenants", TenantViewSet, basename="tenant")
router.register("memberships", MembershipViewSet, basename="membership")
router.register("namespaces", NamespaceViewSet, basename="namespace")
router.register("gpu-types", GpuTypeViewSet, basename="gpu-type")
router.register("clusters", ClusterViewSet, basename="cluster")
router.register("quotas", QuotaViewSet, basename="quota")
router.register("workloads", WorkloadViewSet, basename="workload")
router.register("policies", PolicyViewSet, basename="policy")
router.register("decisions", DecisionViewSet, basename="decision")
router.register("backtests", BacktestJobViewSet, basename="backtest")


def not_found(request: HttpRequest) -> JsonResponse:
    """Unknown API paths answer in the API's error format, not Django's HTML page."""
    return JsonResponse({"detail": "Not found."}, status=404)


urlpatterns: list[URLPattern | URLResolver] = [
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("config/", ConfigView.as_view(), name="api-config"),
    *router.urls,
    re_path(r"^.*$", not_found),
]
