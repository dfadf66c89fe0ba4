import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction

from clusters.models import Cluster


def test_credential_is_encrypted_at_rest(db):
    cluster = Cluster(name="east", api_url="https://k8s.example:6443")
    cluster.credential = "secret-bearer-token"
    cluster.save()
    with connection.cursor() as cursor:
        cursor.execute("SELECT credential_ciphertext FROM clusters_cluster")
        stored = bytes(cursor.fetchone()[0])
    assert b"secret-bearer-token" not in stored
    assert Cluster.objects.get().credential == "secret-bearer-token"


def test_cluster_needs_api_url_or_kubeconfig_context(db):
    cluster = Cluster(name="nowhere")
    with pytest.raises(ValidationError, match="API server URL or a kubeconfig context"):
        cluster.full_clean()
    with pytest.raises(IntegrityError), transaction.atomic():
        cluster.save()
    assert Cluster.objects.count() == 0
    Cluster(name="ctx", kubeconfig_context="prod-east").full_clean()
