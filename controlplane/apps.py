from django.apps import AppConfig


class ControlPlaneConfig(AppConfig):
    name = "controlplane"
    verbose_name = "Control plane"

    def ready(self) -> None:
        from prometheus_client import REGISTRY

        from controlplane import checks  # noqa: F401  (registers the system checks)
        from controlplane.metrics import ControlLoopCollector

        REGISTRY.register(ControlLoopCollector())
