"""Rows saved before the bounds of the next migration are brought inside them first, in a
migration of their own (PostgreSQL cannot alter a table with row updates pending in the same
transaction)."""

from django.db import migrations


def fit_existing_rows(apps, schema_editor):
    """Clamp rows saved before the bounds into them, so the constraints can be added."""
    # The bounds as the next migration adds them (frozen: later changes to the models'
    # bounds must not change what this migration did).
    DAY_S, MAX_GPU_MEMORY_GIB, MAX_GPUS, MAX_HOURLY_COST, MAX_REPLICAS = (
        86_400, 1024, 100_000, 1000, 10_000
    )
    gpu_type = apps.get_model("quotas", "GpuType")
    gpu_type.objects.filter(memory_gib__gt=MAX_GPU_MEMORY_GIB).update(memory_gib=MAX_GPU_MEMORY_GIB)
    gpu_type.objects.filter(relative_throughput__gt=100).update(relative_throughput=100)
    gpu_type.objects.filter(hourly_cost__gt=MAX_HOURLY_COST).update(hourly_cost=MAX_HOURLY_COST)
    quota = apps.get_model("quotas", "Quota")
    quota.objects.filter(nominal__gt=MAX_GPUS).update(nominal=MAX_GPUS)
    quota.objects.filter(borrowing_limit__gt=MAX_GPUS).update(borrowing_limit=MAX_GPUS)
    quota.objects.filter(max_replicas_per_workload__gt=MAX_REPLICAS).update(
        max_replicas_per_workload=MAX_REPLICAS
    )
    quota.objects.filter(reclaim_grace_s__gt=DAY_S).update(reclaim_grace_s=DAY_S)



class Migration(migrations.Migration):
    dependencies = [("quotas", "0003_quota_reclaim_grace")]

    operations = [migrations.RunPython(fit_existing_rows, migrations.RunPython.noop)]
