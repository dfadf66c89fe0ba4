from django.urls import path

from dashboard import views

urlpatterns = [
    path("", views.fleet, name="fleet"),
    path("tenants/<slug:slug>/", views.tenant, name="tenant"),
    path("workloads/<int:pk>/", views.workload, name="workload"),
    path("workloads/<int:pk>/preview/", views.preview, name="preview"),
    path("workloads/<int:pk>/whatif/", views.whatif, name="whatif"),
    path("workloads/<int:pk>/history/", views.history, name="workload-history"),
    path("decisions/", views.decisions, name="decisions"),
]
