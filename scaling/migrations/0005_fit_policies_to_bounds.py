"""Rows saved before the bounds of the next migration are brought inside them first, in a
migration of their own (PostgreSQL cannot alter a table with row updates pending in the same
transaction)."""

from django.db import migrations


def fit_existing_rows(apps, schema_editor):
    """Bring rows saved before the bounds inside them, so the constraints can be added:
    a number is clamped to its range (an optional one at an excluded lower bound becomes
    empty, the algorithm's default); a metric name's stray characters become "_" (it named
    no series before either: the policy keeps holding, now with a warning)."""
    import re

    from scaling.models import BACKTEST_MAX_S, BACKTEST_MIN_S, MAX_GPUS_PER_REPLICA, POLICY_BOUNDS

    policy_model = apps.get_model("scaling", "ScalingPolicy")
    nullable = {f.name for f in policy_model._meta.concrete_fields if f.null}
    for policy in policy_model.objects.all():
        for name, bound in POLICY_BOUNDS.items():
            value = getattr(policy, name)
            if value is None:
                continue
            if value < bound.low or (bound.above and value <= bound.low):
                # (the required fields with an excluded lower bound, target and max metric
                # age, were already held above 0 by the constraints this replaces)
                value = None if name in nullable else bound.low
            elif value > bound.high:
                value = bound.high
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
