"""``manage.py export_config > fleet.yaml``: the fleet as a declarative YAML document."""

from typing import Any

from django.core.management.base import BaseCommand

from api.fleet_config import export_config
from api.renderers import dump_yaml


class Command(BaseCommand):
    help = "Print the fleet configuration (tenants, GPU types, clusters, quotas, workloads, "
    help += "policies) as YAML. Credentials are never exported."

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(dump_yaml(export_config()), ending="")
