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
