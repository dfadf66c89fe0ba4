import pytest
from django.core.management import CommandError, call_command

from quotas.models import Quota
from scaling.models import ScalingPolicy, Workload
from tenants.models import Tenant


def test_load_demo_is_idempotent(db, capsys):
    call_command("load_demo")
    counts = (
        Tenant.objects.count(),
        Quota.objects.count(),
        Workload.objects.count(),
        ScalingPolicy.objects.count(),
    )
    assert counts == (8, 12, 12, 12)
    assert Tenant.objects.organisations().count() == 2
    call_command("load_demo")
    out = capsys.readouterr().out
    assert "(0 new objects)" in out
    assert "admin / demo-password" in out
    assert counts == (
        Tenant.objects.count(),
        Quota.objects.count(),
        Workload.objects.count(),
        ScalingPolicy.objects.count(),
    )


def test_demo_quotas_are_valid(db):
    call_command("load_demo")
    for quota in Quota.objects.all():
        quota.full_clean()
    for policy in ScalingPolicy.objects.all():
        policy.full_clean()


def test_load_demo_refuses_production_mode(db, settings):
    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="production"):
        call_command("load_demo")
    assert not Tenant.objects.exists()


def test_load_demo_reset_undoes_edits_to_the_demos_objects(db, capsys):
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from scaling.models import Decision

    call_command("load_demo")
    policy = ScalingPolicy.objects.get(workload__deployment="chat-llama-8b")
    policy.target, policy.max_replicas = 2, 7
    policy.save()
    quota = Quota.objects.get(tenant__slug="acme-chat", gpu_type__name="A100-80GB")
    quota.nominal, quota.borrowing_limit, quota.lending_limit = 2, 0, 0
    quota.save()
    Tenant.objects.filter(slug="acme-code").update(name="Renamed")
    Quota.objects.filter(tenant__slug="globex-ml").delete()
    Decision.objects.create(
        workload=policy.workload,
        policy=policy,
        policy_version=policy.version,
        at=timezone.now(),
        algorithm="hpa",
        outcome="held",
        current_replicas=1,
        final_replicas=1,
        reason="held",
    )
    get_user_model().objects.filter(username="bob").update(is_active=False)

    call_command("load_demo")  # without --reset every edit stays
    assert ScalingPolicy.objects.get(workload__deployment="chat-llama-8b").target == 2

    call_command("load_demo", "--reset")
    out = capsys.readouterr().out
    assert "Deleted the demo's objects" in out
    policy = ScalingPolicy.objects.get(workload__deployment="chat-llama-8b")
    assert (policy.target, policy.max_replicas, policy.version) == (16, 8, 1)
    quota = Quota.objects.get(tenant__slug="acme-chat", gpu_type__name="A100-80GB")
    assert (quota.nominal, quota.borrowing_limit, quota.lending_limit) == (8, 4, 2)
    assert Tenant.objects.get(slug="acme-code").name == "Acme Code"
    assert Quota.objects.count() == 12
    assert not Decision.objects.exists()
    assert get_user_model().objects.get(username="bob").is_active
