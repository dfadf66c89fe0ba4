"""Field validation of write bodies, answering 422 Invalid as kube-apiserver does."""

from __future__ import annotations

from typing import Any

from simulator.kube_status import ApiError, invalid

_NONNEG = "must be greater than or equal to 0"


def validate_deployment(body: Any, name: str) -> None:
    """Raise 422 unless ``body`` is a Deployment we can run."""
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "the body must be a JSON object")
    causes: list[tuple[str, str]] = []
    meta = body.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name"):
        causes.append(("metadata.name", "Required value: name or generateName is required"))
    elif meta["name"] != name:
        causes.append(("metadata.name", f"Invalid value: {meta['name']!r}: must match the URL"))
    spec = body.get("spec")
    if not isinstance(spec, dict):
        raise invalid("Deployment", "apps", name, [*causes, ("spec", "Required value")])
    replicas = spec.get("replicas", 1)
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        causes.append(("spec.replicas", f"Invalid value: {replicas}: {_NONNEG}"))
    causes.extend(_selector_causes(spec))
    causes.extend(_container_causes(spec))
    if causes:
        raise invalid("Deployment", "apps", name, causes)


def validate_scale(body: Any, name: str) -> int:
    """The replica count of a Scale body, or 422."""
    replicas = (body.get("spec") or {}).get("replicas") if isinstance(body, dict) else None
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        cause = ("spec.replicas", f"Invalid value: {replicas}: {_NONNEG}")
        raise invalid("Scale", "autoscaling", name, [cause])
    return replicas


def validate_quota(body: Any, name: str) -> None:
    if not isinstance(body, dict):
        raise ApiError(400, "BadRequest", "the body must be a JSON object")
    causes: list[tuple[str, str]] = []
    meta = body.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name"):
        causes.append(("metadata.name", "Required value: name or generateName is required"))
    elif meta["name"] != name:
        causes.append(("metadata.name", f"Invalid value: {meta['name']!r}: must match the URL"))
    hard = (body.get("spec") or {}).get("hard")
    if not isinstance(hard, dict):
        causes.append(("spec.hard", "Required value"))
    else:
        for key, value in hard.items():
            if not _is_quantity(value):
                causes.append((f"spec.hard[{key}]", f"Invalid value: {value!r}: {_NONNEG}"))
    if causes:
        raise invalid("ResourceQuota", "", name, causes)


def _selector_causes(spec: dict[str, Any]) -> list[tuple[str, str]]:
    selector = (spec.get("selector") or {}).get("matchLabels")
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not isinstance(selector, dict) or not selector:
        return [("spec.selector", "Required value")]
    if any(labels.get(k) != v for k, v in selector.items()):
        return [
            (
                "spec.template.metadata.labels",
                f"Invalid value: {labels}: `selector` does not match template `labels`",
            )
        ]
    return []


def _container_causes(spec: dict[str, Any]) -> list[tuple[str, str]]:
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers")
    if not isinstance(containers, list) or not containers:
        return [("spec.template.spec.containers", "Required value")]
    causes = []
    for n, container in enumerate(containers):
        where = f"spec.template.spec.containers[{n}]"
        if not isinstance(container, dict) or not container.get("name"):
            causes.append((f"{where}.name", "Required value"))
            continue
        resources = container.get("resources") or {}
        for kind in ("requests", "limits"):
            for key, value in (resources.get(kind) or {}).items():
                if key == "nvidia.com/gpu" and not _is_quantity(value):
                    causes.append(
                        (
                            f"{where}.resources.{kind}[{key}]",
                            f"Invalid value: {value!r}: must be a whole number >= 0",
                        )
                    )
    return causes


def _is_quantity(value: Any) -> bool:
    try:
        return int(str(value).strip()) >= 0
    except ValueError:
        return False
