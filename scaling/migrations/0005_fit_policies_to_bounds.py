"""Rows saved before the bounds of the next migration are brought inside them first, in a
migration of their own (PostgreSQL cannot alter a table with row updates pending in the same
transaction)."""

from django.db import migrations

# The bounds as this migration adds them (frozen here: later changes to the models' bounds
# must not change what this migration did). Field -> (low, high, low excluded).
HOUR = 3600.0
POLICY_BOUNDS = {
    "target": (0, 1e9, True),
    "min_replicas": (0, 10_000, False),
    "max_replicas": (1, 10_000, False),
    "scale_up_tolerance": (0, 1, False),
    "scale_down_tolerance": (0, 1, False),
    "scale_up_stabilization_s": (0, HOUR, False),
    "scale_down_stabilization_s": (0, HOUR, False),
    "scale_up_max_percent": (0, 10_000, True),
    "scale_up_max_pods": (1, 10_000, False),
    "scale_up_period_s": (0, 1800, True),
    "scale_down_max_percent": (0, 100, True),
    "scale_down_max_pods": (1, 10_000, False),
    "scale_down_period_s": (0, 1800, True),
    "stable_window_s": (0, HOUR, True),
    "panic_window_s": (0, HOUR, True),
    "panic_threshold_percent": (110, 1000, False),
    "max_scale_up_rate": (1, 1000, True),
    "max_scale_down_rate": (1, 1000, True),
    "cooldown_s": (0, HOUR, False),
    "scale_to_zero_grace_s": (0, HOUR, False),
    "cold_start_s": (0, HOUR, False),
    "max_metric_age_s": (0, HOUR, True),
    "slo_ttft_p95_s": (0, 600, True),
    "max_concurrency": (1, 10_000, False),
}
MAX_GPUS_PER_REPLICA = 256
BACKTEST_MIN_S, BACKTEST_MAX_S = 60.0, 3600.0


def fit_existing_rows(apps, schema_editor):
    """Bring rows saved before the bounds inside them, so the constraints can be added:
    a number is clamped to its range (an optional one at an excluded lower bound becomes
    empty, the algorithm's default); a metric name's stray characters become "_" (it named
    no series before either: the policy keeps holding, now with a warning)."""
    import re

    policy_model = apps.get_model("scaling", "ScalingPolicy")
    nullable = {f.name for f in policy_model._meta.concrete_fields if f.null}
    for policy in policy_model.objects.all():
        for name, (low, high, above) in POLICY_BOUNDS.items():
            value = getattr(policy, name)
            if value is None:
                continue
            if value < low or (above and value <= low):
                # (the required fields with an excluded lower bound, target and max metric
                # age, were already held above 0 by the constraints this replaces)
                value = None if name in nullable else low
            elif value > high:
                value = high
            setattr(policy, name, value)
        if policy.min_replicas > policy.max_replicas:
            policy.min_replicas = policy.max_replicas
        policy.metric = re.sub(r"[^a-zA-Z0-9_:]", "_", policy.metric) or "_"
        if policy.metric[0].isdigit():
            policy.metric = "_" + policy.metric
        policy.save()
    workload_model = apps.get_model("scaling", "Workload")
    workload_model.objects.filter(gpus_per_replica__gt=MAX_GPUS_PER_REPLICA).update(
        gpus_per_replica=MAX_GPUS_PER_REPLICA
    )
    job_model = apps.get_model("scaling", "BacktestJob")
    job_model.objects.filter(duration_s__lt=BACKTEST_MIN_S).update(duration_s=BACKTEST_MIN_S)
    job_model.objects.filter(duration_s__gt=BACKTEST_MAX_S).update(duration_s=BACKTEST_MAX_S)



class Migration(migrations.Migration):
    dependencies = [("scaling", "0004_backtestjob")]

    operations = [migrations.RunPython(fit_existing_rows, migrations.RunPython.noop)]
