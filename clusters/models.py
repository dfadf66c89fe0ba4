"""Kubernetes clusters the control plane manages, and how to reach them."""

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.db import models
from django.db.models import Q


def _fernet() -> MultiFernet:
    # The first key encrypts; every key decrypts, so keys can be rotated.
    if not settings.CREDENTIAL_KEYS:
        raise ImproperlyConfigured("CREDENTIAL_KEYS is not set (see check controlplane.E011).")
    return MultiFernet([Fernet(key) for key in settings.CREDENTIAL_KEYS])


class Cluster(models.Model):
    """A Kubernetes cluster: where its API server is, how to authenticate, where its metrics
    come from.

    Credentials are either a kubeconfig context name (the file stays outside the database) or a
    bearer token stored encrypted at rest; the plaintext never reaches the database.
    """

    class MetricsSource(models.TextChoices):
        PROMETHEUS = "prometheus", "Prometheus server (PromQL)"
        EXPORTER = "exporter", "Exporters' /metrics text, read directly"

    name = models.CharField(max_length=63, unique=True)
    api_url = models.URLField(
        "API server URL",
        max_length=500,
        blank=True,
        help_text="Empty when the kubeconfig context names the server.",
    )
    kubeconfig_context = models.CharField(max_length=200, blank=True)
    credential_ciphertext = models.BinaryField(blank=True, default=b"", editable=False)
    verify_tls = models.BooleanField("verify TLS", default=True)
    metrics_source = models.CharField(
        max_length=16, choices=MetricsSource.choices, default=MetricsSource.PROMETHEUS
    )
    metrics_url = models.URLField(
        max_length=500,
        blank=True,
        help_text="Prometheus base URL, or the exporters' /metrics URL.",
    )
    pool_url = models.URLField(
        "inference pool admin URL",
        max_length=500,
        blank=True,
        help_text="Base URL of the inference pool's admin API (docs/pool-protocol.md).",
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(api_url="") | ~Q(kubeconfig_context=""),
                name="cluster_has_api_url_or_context",
                violation_error_message="Give the API server URL or a kubeconfig context.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if not self.api_url and not self.kubeconfig_context:
            raise ValidationError("Give the API server URL or a kubeconfig context.")

    @property
    def has_credential(self) -> bool:
        return bool(self.credential_ciphertext)

    @property
    def credential(self) -> str:
        """The decrypted bearer token, or "" when none is stored."""
        if not self.credential_ciphertext:
            return ""
        try:
            return _fernet().decrypt(bytes(self.credential_ciphertext)).decode()
        except InvalidToken as exc:
            raise ImproperlyConfigured(
                f"The credential of cluster {self.name} does not decrypt with CREDENTIAL_KEYS."
            ) from exc

    @credential.setter
    def credential(self, token: str) -> None:
        self.credential_ciphertext = _fernet().encrypt(token.encode()) if token else b""


class GpuNode(models.Model):
    """A node with GPUs, as the last inventory sync saw it (for the UI and quota capacity)."""

    cluster = models.ForeignKey(Cluster, on_delete=models.CASCADE, related_name="nodes")
    name = models.CharField(max_length=253)
    gpu_product = models.CharField(
        max_length=100, help_text="The node's nvidia.com/gpu.product label value."
    )
    gpu_capacity = models.PositiveIntegerField()
    gpu_allocatable = models.PositiveIntegerField()
    gpu_requested = models.PositiveIntegerField(
        default=0, help_text="GPUs requested by the pods bound to the node and not finished."
    )
    ready = models.BooleanField(default=True)
    seen_at = models.DateTimeField()

    class Meta:
        ordering = ["cluster__name", "name"]
        verbose_name = "GPU node"
        constraints = [
            models.UniqueConstraint(fields=["cluster", "name"], name="gpunode_unique_per_cluster")
        ]

    def __str__(self) -> str:
        return f"{self.cluster}/{self.name} ({self.gpu_capacity} x {self.gpu_product})"
