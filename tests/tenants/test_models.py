import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from tenants.models import Membership, Role, Tenant


@pytest.mark.parametrize("slug", ["Team-A", "-team", "team-", "team_a", "tëam", "a" * 64, ""])
def test_invalid_slug_is_rejected_with_a_clear_message(db, slug):
    tenant = Tenant(slug=slug, name="x")
    with pytest.raises(ValidationError) as err:
        tenant.full_clean()
    assert "slug" in err.value.message_dict
    assert Tenant.objects.count() == 0


def test_database_refuses_slug_that_is_not_a_dns_label(db):
    with pytest.raises(IntegrityError), transaction.atomic():
        Tenant.objects.create(slug="Not_DNS", name="x")
    assert Tenant.objects.count() == 0


@pytest.mark.parametrize("weight", [0, -1.5])
def test_fair_share_weight_must_be_positive(db, weight):
    tenant = Tenant(slug="t", name="t", fair_share_weight=weight)
    with pytest.raises(ValidationError, match="greater than 0"):
        tenant.full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        tenant.save()
    assert Tenant.objects.count() == 0


def test_hierarchy_has_two_levels(team_a):
    deeper = Tenant(slug="sub-team", name="x", parent=team_a)
    with pytest.raises(ValidationError, match="Only two levels"):
        deeper.full_clean()


def test_an_organisation_with_teams_cannot_get_a_parent(org, team_a, other_org):
    org.parent = other_org
    with pytest.raises(ValidationError, match="organisation with teams"):
        org.full_clean()


def test_unicode_names_are_fine(db):
    tenant = Tenant(slug="equipe-a", name="Équipe A — 東京")
    tenant.full_clean()
    tenant.save()
    assert str(Tenant.objects.get()) == "equipe-a"


def test_one_membership_per_user_and_tenant(team_a, make_user):
    user = make_user("u", team_a, Role.VIEWER)
    duplicate = Membership(user=user, tenant=team_a, role=Role.ADMIN)
    with pytest.raises(ValidationError, match="already has a role"):
        duplicate.full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.save()
    assert Membership.objects.count() == 1


def test_for_user_scopes_to_memberships_and_org_teams(org, team_a, team_b, other_org, make_user):
    member = make_user("member", team_a)
    org_admin = make_user("org-admin", org, Role.ADMIN)
    staff = make_user("staff", staff=True)
    outsider = make_user("outsider")
    assert set(Tenant.objects.for_user(member)) == {team_a}
    assert set(Tenant.objects.for_user(org_admin)) == {org, team_a, team_b}
    assert set(Tenant.objects.for_user(staff)) == {org, team_a, team_b, other_org}
    assert not Tenant.objects.for_user(outsider).exists()


def test_for_user_respects_minimum_role(team_a, team_b, make_user):
    user = make_user("u", team_a, Role.VIEWER)
    Membership.objects.create(user=user, tenant=team_b, role=Role.OPERATOR)
    assert set(Tenant.objects.for_user(user, Role.OPERATOR)) == {team_b}
    assert Membership.objects.role_of(user, team_a) == Role.VIEWER
    assert Membership.objects.role_of(user, team_b) == Role.OPERATOR


def test_inactive_user_sees_nothing(team_a, make_user):
    user = make_user("u", team_a)
    user.is_active = False
    user.save()
    assert not Tenant.objects.for_user(user).exists()
