"""Validation of the workload kinds: Deployments and Pods (containers, lifecycle hooks)."""

from __future__ import annotations

from typing import Any

from controller.sandbox.apierrors import FieldError
from controller.sandbox.hooks import validate_lifecycle
from controller.sandbox.patch import json_equal
from controller.sandbox.selectors import (
    SelectorError,
    selector_from_label_selector,
)
from controller.sandbox.validation.common import (
    DNS_LABEL,
    Obj,
    invalid,
    is_int,
    required,
    validate_labels,
)


def _validate_containers(containers: Any, path: str) -> list[FieldError]:
    if not isinstance(containers, list) or not containers:
        return [required(path)]
    errs: list[FieldError] = []
    seen: set[str] = set()
    for i, c in enumerate(containers):
        p = f"{path}[{i}]"
        if not isinstance(c, dict):
            errs.append(invalid(p, c, "must be an object"))
            continue
        name = c.get("name")
        if not isinstance(name, str) or not name:
            errs.append(required(f"{p}.name"))
        elif not DNS_LABEL.match(name) or len(name) > 63:
            errs.append(
                invalid(
                    f"{p}.name",
                    name,
                    "a lowercase RFC 1123 label must consist of lower case "
                    "alphanumeric characters or '-', and must start and end with an "
                    "alphanumeric character",
                )
            )
        elif name in seen:
            errs.append(FieldError(f"{p}.name", "FieldValueDuplicate", "", name))
        else:
            seen.add(name)
        if not isinstance(c.get("image"), str) or not c.get("image"):
            errs.append(required(f"{p}.image"))
        for j, port in enumerate(c.get("ports") or []):
            cp = port.get("containerPort") if isinstance(port, dict) else None
            if not is_int(cp) or not 1 <= cp <= 65535:
                errs.append(
                    invalid(
                        f"{p}.ports[{j}].containerPort",
                        cp,
                        "must be between 1 and 65535, inclusive",
                    )
                )
        env = c.get("env")
        if env is not None and (
            not isinstance(env, list) or not all(isinstance(e, dict) and e.get("name") for e in env)
        ):
            errs.append(required(f"{p}.env[].name"))
    return errs


def _validate_pod_spec(spec: Any, path: str) -> list[FieldError]:
    if not isinstance(spec, dict):
        return [required(path)]
    errs = _validate_containers(spec.get("containers"), f"{path}.containers")
    grace = spec.get("terminationGracePeriodSeconds")
    for i, c in enumerate(spec.get("containers") or []):
        if isinstance(c, dict):
            errs += validate_lifecycle(c, grace, f"{path}.containers[{i}]")
    if grace is not None and (not is_int(grace) or grace < 0):
        errs.append(
            invalid(
                f"{path}.terminationGracePeriodSeconds", grace, "must be greater than or equal to 0"
            )
        )
    return errs


def validate_deployment(obj: Obj, old: Obj | None) -> list[FieldError]:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return [required("spec")]
    errs: list[FieldError] = []
    replicas = spec.get("replicas")
    if not is_int(replicas):
        errs.append(invalid("spec.replicas", replicas, "must be an integer"))
    elif replicas < 0:
        errs.append(invalid("spec.replicas", replicas, "must be greater than or equal to 0"))
    selector_obj = spec.get("selector")
    template = spec.get("template")
    if not isinstance(selector_obj, dict):
        errs.append(required("spec.selector"))
    else:
        try:
            selector = selector_from_label_selector(selector_obj)
        except SelectorError as e:
            errs.append(invalid("spec.selector", selector_obj, str(e)))
        else:
            if selector.empty():
                errs.append(
                    invalid(
                        "spec.selector", selector_obj, "empty selector is invalid for deployment"
                    )
                )
            labels = (
                (template or {}).get("metadata", {}).get("labels")
                if isinstance(template, dict)
                else None
            )
            if not selector.empty() and not selector.matches(
                labels if isinstance(labels, dict) else {}
            ):
                errs.append(
                    invalid(
                        "spec.template.metadata.labels",
                        labels,
                        "`selector` does not match template `labels`",
                    )
                )
    if not isinstance(template, dict):
        errs.append(required("spec.template"))
    else:
        errs += validate_labels(
            (template.get("metadata") or {}).get("labels"), "spec.template.metadata.labels"
        )
        errs += _validate_pod_spec(template.get("spec"), "spec.template.spec")
        restart = (
            (template.get("spec") or {}).get("restartPolicy")
            if isinstance(template.get("spec"), dict)
            else None
        )
        if restart not in (None, "Always"):
            errs.append(
                FieldError(
                    "spec.template.spec.restartPolicy",
                    "FieldValueNotSupported",
                    'supported values: "Always"',
                    restart,
                )
            )
    strategy = (
        (spec.get("strategy") or {}).get("type") if isinstance(spec.get("strategy"), dict) else None
    )
    if strategy not in (None, "RollingUpdate", "Recreate"):
        errs.append(
            FieldError(
                "spec.strategy.type",
                "FieldValueNotSupported",
                'supported values: "Recreate", "RollingUpdate"',
                strategy,
            )
        )
    if old is not None and not json_equal(
        spec.get("selector"), (old.get("spec") or {}).get("selector")
    ):
        errs.append(invalid("spec.selector", selector_obj, "field is immutable"))
    return errs


def validate_pod(obj: Obj, old: Obj | None) -> list[FieldError]:
    errs = _validate_pod_spec(obj.get("spec"), "spec")
    if old is not None and not errs:

        def mutable_stripped(spec: Obj) -> Obj:
            s = {k: v for k, v in spec.items() if k not in ("activeDeadlineSeconds", "tolerations")}
            s["containers"] = [
                {k: v for k, v in c.items() if k != "image"} for c in s.get("containers", [])
            ]
            return s

        if not json_equal(mutable_stripped(obj["spec"]), mutable_stripped(old.get("spec") or {})):
            errs.append(
                FieldError(
                    "spec",
                    "FieldValueForbidden",
                    "pod updates may not change fields other than `spec.containers[*].image`,"
                    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,"
                    "`spec.tolerations` (only additions to existing tolerations),"
                    "`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was "
                    "previously negative)",
                )
            )
    return errs
