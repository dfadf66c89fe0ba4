"""Declarative fleet configuration: export the fleet as a document, import one idempotently.

The document (YAML or JSON) names every object by its natural key, never by id: GPU types and
clusters by name, tenants by slug, quotas by tenant and GPU type, workloads by cluster,
namespace and Deployment, each workload's policy and its further GPU types (``variants``, by
GPU type) nested under it. Credentials are never
exported. Shared by ``manage.py export_config`` / ``import_config`` and ``/api/v1/config/``.

Import semantics (GitOps-friendly):

1. Each object in the document is created or updated to exactly what the document says; a
   field left out takes the model's default. Objects missing from the document are left alone
   (import never deletes), and a workload without ``policy`` keeps the policy it has; a
   variant is created or updated by its GPU type, and one the document does not list stays.
2. Everything is applied in one transaction, in dependency order (GPU types, clusters,
   organisations, teams, namespaces, quotas, workloads, variants, policies), each object
   validated with
   the model's ``full_clean``. Any error rolls everything back and all errors are reported together.
3. Only objects that differ are saved, so importing the same document again changes nothing
   (and a policy's version only moves when the policy changes). Changes of tenants, namespace
   mappings, quotas and policies are recorded in the history with the reason "import_config".
4. A dry run does all of the above and then rolls back: the diff is exactly what would happen.
"""

import copy
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.db import models, transaction
from django.db.models import Prefetch

from api.validation import model_errors
from clusters.models import Cluster
from history.models import record_change, snapshot
from quotas.models import GpuType, Quota
from scaling.models import ScalingPolicy, Workload, WorkloadVariant
from scaling.tasks import request_reconcile
from tenants.models import Namespace, Tenant

FORMAT_VERSION = 1
HISTORY_REASON = "import_config"
TRACKED = (Tenant, Namespace, Quota, ScalingPolicy)
_MISSING = object()


@dataclass(frozen=True)
class Kind:
    """One section of the document: its model, natural key, plain fields and references."""

    section: str
    model: type[models.Model]
    key: tuple[str, ...]
    fields: tuple[str, ...]
    refs: dict[str, tuple[type[models.Model], str]] = field(default_factory=dict)

    @property
    def names(self) -> tuple[str, ...]:
        return (*self.key, *[n for n in self.fields if n not in self.key])


GPU_TYPES = Kind(
    "gpu_types",
    GpuType,
    ("name",),
    ("memory_gib", "relative_throughput", "hourly_cost", "node_label"),
)
CLUSTERS = Kind(
    "clusters",
    Cluster,
    ("name",),
    (
        "api_url",
        "kubeconfig_context",
        "verify_tls",
        "metrics_source",
        "metrics_url",
        "pool_url",
        "enabled",
    ),
)
TENANTS = Kind(
    "tenants",
    Tenant,
    ("slug",),
    ("name", "parent", "priority", "fair_share_weight", "active"),
    {"parent": (Tenant, "slug")},
)
NAMESPACES = Kind(
    "namespaces",
    Namespace,
    ("cluster", "name"),
    ("tenant",),
    {"cluster": (Cluster, "name"), "tenant": (Tenant, "slug")},
)
QUOTAS = Kind(
    "quotas",
    Quota,
    ("tenant", "gpu_type"),
    (
        "nominal",
        "borrowing_limit",
        "lending_limit",
        "max_replicas_per_workload",
        "reclaim_grace_s",
    ),
    {"tenant": (Tenant, "slug"), "gpu_type": (GpuType, "name")},
)
WORKLOADS = Kind(
    "workloads",
    Workload,
    ("cluster", "namespace", "deployment"),
    ("tenant", "model_name", "gpu_type", "gpus_per_replica"),
    {"cluster": (Cluster, "name"), "tenant": (Tenant, "slug"), "gpu_type": (GpuType, "name")},
)
VARIANTS = Kind(
    "variants",
    WorkloadVariant,
    ("workload", "gpu_type"),
    ("deployment", "min_replicas", "max_replicas"),
    {"gpu_type": (GpuType, "name")},
)
_POLICY_SKIP = {"id", "workload", "version", "updated_at"}
POLICIES = Kind(
    "policy",
    ScalingPolicy,
    ("workload",),
    tuple(f.name for f in ScalingPolicy._meta.concrete_fields if f.name not in _POLICY_SKIP),
)
SECTIONS = (GPU_TYPES, CLUSTERS, TENANTS, NAMESPACES, QUOTAS, WORKLOADS)


# --- export --------------------------------------------------------------------------------------


def _plain(value: Any) -> Any:
    # Decimals stay exact as strings; YAML and JSON both read them back unchanged.
    return str(value) if isinstance(value, Decimal) else value


def _raw_value(instance: models.Model, kind: Kind, name: str) -> Any:
    """A field's value, with references as their natural key."""
    if name in kind.refs:
        related = getattr(instance, name)
        return getattr(related, kind.refs[name][1]) if related is not None else None
    return getattr(instance, name)


def _value_of(instance: models.Model, kind: Kind, name: str) -> Any:
    return _plain(_raw_value(instance, kind, name))


def _export_object(instance: models.Model, kind: Kind) -> dict[str, Any]:
    return {name: _value_of(instance, kind, name) for name in kind.names}


def _export_policy(policy: ScalingPolicy) -> dict[str, Any]:
    # Unset tuning fields mean "the algorithm's default": leave them out to keep files short.
    values = {name: _value_of(policy, POLICIES, name) for name in POLICIES.fields}
    return {name: value for name, value in values.items() if value is not None}


def export_config() -> dict[str, Any]:
    """The whole fleet as a plain document (no ids, no credentials)."""
    tenants = sorted(
        Tenant.objects.select_related("parent"), key=lambda t: (t.parent_id is not None, t.slug)
    )
    workloads = Workload.objects.select_related(
        "cluster", "tenant", "gpu_type", "policy"
    ).prefetch_related(Prefetch("variants", WorkloadVariant.objects.select_related("gpu_type")))
    return {
        "version": FORMAT_VERSION,
        "gpu_types": [_export_object(g, GPU_TYPES) for g in GpuType.objects.all()],
        "clusters": [_export_object(c, CLUSTERS) for c in Cluster.objects.all()],
        "tenants": [_export_object(t, TENANTS) for t in tenants],
        "namespaces": [
            _export_object(n, NAMESPACES)
            for n in Namespace.objects.select_related("cluster", "tenant")
        ],
        "quotas": [
            _export_object(q, QUOTAS) for q in Quota.objects.select_related("tenant", "gpu_type")
        ],
        "workloads": [_export_workload(w) for w in workloads.order_by("cluster__name", "pk")],
    }


def _export_workload(workload: Workload) -> dict[str, Any]:
    entry = _export_object(workload, WORKLOADS)
    variants = [
        {n: _value_of(v, VARIANTS, n) for n in VARIANTS.names if n != "workload"}
        for v in workload.variants.all()
    ]
    if variants:
        entry["variants"] = variants
    policy = workload.policy_or_none
    if policy is not None:
        entry["policy"] = _export_policy(policy)
    return entry


# --- import --------------------------------------------------------------------------------------


@dataclass
class Change:
    action: str  # "create" or "update"
    kind: str
    key: str
    fields: dict[str, tuple[Any, Any]]  # name -> (before, after)

    def lines(self) -> list[str]:
        sign = "+" if self.action == "create" else "~"
        head = f"{sign} {self.kind} {self.key}"
        if self.action == "create":
            return [head, *(f"    {n}: {new!r}" for n, (_, new) in self.fields.items())]
        return [head, *(f"    {n}: {old!r} -> {new!r}" for n, (old, new) in self.fields.items())]


@dataclass
class ImportResult:
    dry_run: bool
    changes: list[Change] = field(default_factory=list)
    unchanged: int = 0

    @property
    def summary(self) -> str:
        if not self.changes:
            return f"No changes: all {self.unchanged} objects already match."
        created = sum(1 for c in self.changes if c.action == "create")
        updated = len(self.changes) - created
        verb = "would be" if self.dry_run else "were"
        return f"{created} created, {updated} updated, {self.unchanged} unchanged ({verb} applied)."

    def diff(self) -> str:
        return "\n".join(line for change in self.changes for line in change.lines())


class ConfigInvalid(Exception):
    """The document has errors; nothing was changed. ``errors``: path to messages."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__(f"{len(errors)} error(s) in the configuration")
        self.errors = errors


class _Importer:
    def __init__(self, actor: Any, dry_run: bool) -> None:
        self.actor = actor
        self.result = ImportResult(dry_run=dry_run)
        self.errors: dict[str, list[str]] = {}

    def error(self, path: str, *messages: str) -> None:
        self.errors.setdefault(path, []).extend(messages)

    def run(self, document: Any) -> None:
        if not isinstance(document, dict):
            self.error("document", "Expected a mapping with sections such as tenants, quotas.")
            return
        known = {"version", *(kind.section for kind in SECTIONS)}
        for name in sorted(str(key) for key in document if key not in known):
            self.error(name, "Unknown section.")
        if document.get("version", FORMAT_VERSION) != FORMAT_VERSION:
            self.error("version", f"Only version {FORMAT_VERSION} is understood.")
        for kind in SECTIONS:
            self.apply_section(kind, document.get(kind.section) or [])

    def apply_section(self, kind: Kind, entries: Any) -> None:
        if not isinstance(entries, list):
            self.error(kind.section, "Expected a list.")
            return
        indexed = list(enumerate(entries))
        if kind is TENANTS:  # organisations before their teams
            indexed.sort(key=lambda item: isinstance(item[1], dict) and bool(item[1].get("parent")))
        for index, entry in indexed:
            path = f"{kind.section}[{index}]"
            extra = ("policy", "variants") if kind is WORKLOADS else ()
            instance = self.apply(kind, entry, path, extra)
            if instance is None or not isinstance(entry, dict):
                continue
            if entry.get("variants"):
                self.apply_variants(instance, entry["variants"], f"{path}.variants")
            if entry.get("policy"):
                self.apply_policy(instance, entry["policy"], f"{path}.policy")

    def apply_variants(self, workload: models.Model, entries: Any, path: str) -> None:
        if not isinstance(entries, list):
            self.error(path, "Expected a list.")
            return
        for index, entry in enumerate(entries):
            if not isinstance(entry, dict):
                self.error(f"{path}[{index}]", "Expected a mapping.")
                continue
            self.apply(VARIANTS, {**entry, "workload": workload}, f"{path}[{index}]")

    def apply_policy(self, workload: models.Model, entry: Any, path: str) -> None:
        if not isinstance(entry, dict):
            self.error(path, "Expected a mapping.")
            return
        self.apply(POLICIES, {**entry, "workload": workload}, path)

    def resolve(self, kind: Kind, name: str, raw: Any, path: str) -> Any:
        if name not in kind.refs or raw is None or isinstance(raw, models.Model):
            if isinstance(raw, dict | list):
                self.error(f"{path}.{name}", "Expected a single value.")
                return _MISSING
            return raw
        model, key = kind.refs[name]
        found = model._default_manager.filter(**{key: str(raw)}).first()
        if found is None:
            self.error(f"{path}.{name}", f"No {model._meta.verbose_name} named {raw!r}.")
            return _MISSING
        return found

    def apply(
        self, kind: Kind, entry: Any, path: str, extra: tuple[str, ...] = ()
    ) -> models.Model | None:
        if not isinstance(entry, dict):
            self.error(path, "Expected a mapping.")
            return None
        for name in sorted(str(k) for k in entry if k not in kind.names and k not in extra):
            self.error(f"{path}.{name}", "Unknown field.")
        missing_keys = [name for name in kind.key if entry.get(name) in (None, "")]
        for name in missing_keys:
            self.error(f"{path}.{name}", "This natural key is required.")
        values = {name: self.resolve(kind, name, entry.get(name), path) for name in kind.names}
        if missing_keys or any(value is _MISSING for value in values.values()):
            return None
        existing = kind.model._default_manager.filter(**{n: values[n] for n in kind.key}).first()
        return self.save(kind, existing, values, path)

    def save(
        self, kind: Kind, existing: models.Model | None, values: dict[str, Any], path: str
    ) -> models.Model | None:
        instance = copy.copy(existing) if existing is not None else kind.model()
        for name in kind.names:
            value = values[name]
            if value is None and name not in kind.refs:
                # Declarative: a field the document leaves out takes the model's default.
                model_field = kind.model._meta.get_field(name)
                assert isinstance(model_field, models.Field)
                value = model_field.get_default()
            setattr(instance, name, value)
        errors = model_errors(instance)
        for name, messages in errors.items():
            self.error(path if name == NON_FIELD_ERRORS else f"{path}.{name}", *messages)
        if errors:
            return None
        changed = self.changed_fields(kind, existing, instance)
        if existing is not None and not changed:
            self.result.unchanged += 1
            return existing
        before = snapshot(existing) if existing is not None else None
        instance.save()
        if isinstance(instance, TRACKED):
            record_change(instance, before, actor=self.actor, reason=HISTORY_REASON)
        if isinstance(instance, ScalingPolicy | WorkloadVariant):
            request_reconcile(instance.workload)
        action = "create" if existing is None else "update"
        key = "/".join(str(_value_of(instance, kind, n)) for n in kind.key if n != "workload")
        if kind is POLICIES:
            key = str(instance.workload)  # type: ignore[attr-defined]
        elif kind is VARIANTS:
            key = f"{instance.workload} on {key}"  # type: ignore[attr-defined]
        self.result.changes.append(Change(action, kind.section.rstrip("s"), key, changed))
        return instance

    @staticmethod
    def changed_fields(
        kind: Kind, existing: models.Model | None, instance: models.Model
    ) -> dict[str, tuple[Any, Any]]:
        names = [n for n in kind.names if n != "workload"]
        if existing is None:
            return {n: (None, _value_of(instance, kind, n)) for n in names}
        # Compared after full_clean converted the values: Decimal("2.2") equals Decimal("2.20").
        return {
            n: (_value_of(existing, kind, n), _value_of(instance, kind, n))
            for n in names
            if _raw_value(existing, kind, n) != _raw_value(instance, kind, n)
        }


def import_config(document: Any, *, dry_run: bool = False, actor: Any = None) -> ImportResult:
    """Apply ``document`` (see the module docstring); raise ConfigInvalid if anything is wrong."""
    importer = _Importer(actor, dry_run)
    with transaction.atomic():
        importer.run(document)
        if importer.errors:
            transaction.set_rollback(True)
            raise ConfigInvalid(importer.errors)
        if dry_run:
            transaction.set_rollback(True)
    return importer.result
