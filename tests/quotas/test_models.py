import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from quotas.models import GpuType, Quota


def test_gpu_type_rejects_non_positive_memory_and_throughput(db):
    bad = GpuType(name="X", memory_gib=0, relative_throughput=-1, node_label="x")
    with pytest.raises(ValidationError) as err:
        bad.full_clean()
    text = str(err.value)
    assert "greater than 0" in text or "at least 1" in text
    assert GpuType.objects.count() == 0


def test_negative_nominal_is_rejected(team_a, gpu_type):
    quota = Quota(tenant=team_a, gpu_type=gpu_type, nominal=-1)
    with pytest.raises(ValidationError) as err:
        quota.full_clean()
    assert "nominal" in err.value.message_dict
    with pytest.raises(IntegrityError), transaction.atomic():
        quota.save()
    assert Quota.objects.count() == 0


def test_lending_limit_above_nominal_is_rejected(team_a, gpu_type):
    quota = Quota(tenant=team_a, gpu_type=gpu_type, nominal=4, lending_limit=5)
    with pytest.raises(ValidationError, match="between 0 and nominal"):
        quota.full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        quota.save()
    assert Quota.objects.count() == 0


def test_borrowing_and_lending_only_inside_a_cohort(other_org, gpu_type):
    quota = Quota(
        tenant=other_org, gpu_type=gpu_type, nominal=4, borrowing_limit=2, lending_limit=1
    )
    with pytest.raises(ValidationError) as err:
        quota.full_clean()
    assert set(err.value.message_dict) == {"borrowing_limit", "lending_limit"}


def test_null_limits_mean_no_limit_and_zero_is_kept(team_a, gpu_type):
    quota = Quota(tenant=team_a, gpu_type=gpu_type, nominal=4, borrowing_limit=0)
    quota.full_clean()
    quota.save()
    quota.refresh_from_db()
    assert quota.borrowing_limit == 0
    assert quota.lending_limit is None


def test_one_quota_per_tenant_and_gpu_type(team_a, gpu_type):
    Quota.objects.create(tenant=team_a, gpu_type=gpu_type, nominal=4)
    with pytest.raises(ValidationError, match="already has a quota"):
        Quota(tenant=team_a, gpu_type=gpu_type, nominal=2).full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        Quota.objects.create(tenant=team_a, gpu_type=gpu_type, nominal=2)
    assert Quota.objects.get().nominal == 4
