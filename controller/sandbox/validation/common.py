"""What every kind shares: field-error builders, name rules, labels, annotations, metadata."""

from __future__ import annotations

import re
from typing import Any, TypeGuard

from controller.sandbox.apierrors import FieldError
from controller.sandbox.kinds import ResourceType
from controller.sandbox.selectors import (
    label_key_errors,
    label_value_errors,
)

Obj = dict[str, Any]

DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
# apimachinery's TotalAnnotationSizeLimitB: keys and values of all annotations, in bytes.
TOTAL_ANNOTATION_SIZE = 256 * 1024


def invalid(path: str, value: Any, detail: str) -> FieldError:
    """FieldValueInvalid at `path`."""
    return FieldError(path, "FieldValueInvalid", detail, value)


def required(path: str, detail: str = "") -> FieldError:
    """FieldValueRequired at `path`."""
    return FieldError(path, "FieldValueRequired", detail)


def is_int(value: Any) -> TypeGuard[int]:
    """A JSON integer (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def validate_name(rt: ResourceType, name: Any) -> list[FieldError]:
    """Name rules: DNS-1035 label for Services, DNS-1123 subdomain for the rest."""
    if not isinstance(name, str) or not name:
        return [required("metadata.name", "name or generateName is required")]
    if rt.kind == "Service":
        if len(name) > 63 or not DNS_1035.match(name):
            return [
                invalid(
                    "metadata.name",
                    name,
                    "a DNS-1035 label must consist of lower case alphanumeric "
                    "characters or '-', start with an alphabetic character, and end with an "
                    "alphanumeric character",
                )
            ]
    elif len(name) > 253 or not DNS_SUBDOMAIN.match(name):
        return [
            invalid(
                "metadata.name",
                name,
                "a lowercase RFC 1123 subdomain must consist of lower case "
                "alphanumeric characters, '-' or '.', and must start and end with an "
                "alphanumeric character",
            )
        ]
    return []


def validate_labels(labels: Any, path: str) -> list[FieldError]:
    """Label keys and values at `path`."""
    if labels is None:
        return []
    if not isinstance(labels, dict):
        return [invalid(path, labels, "must be a map of string keys to string values")]
    errs: list[FieldError] = []
    for k, v in labels.items():
        errs += [invalid(path, k, e) for e in label_key_errors(k)]
        if not isinstance(v, str):
            errs.append(invalid(f"{path}", v, "label values must be strings"))
        else:
            errs += [invalid(path, v, e) for e in label_value_errors(v)]
    return errs


def validate_metadata(rt: ResourceType, obj: Obj) -> list[FieldError]:
    """Common ObjectMeta checks (name, labels, annotations)."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        return [required("metadata")]
    errs = validate_name(rt, meta.get("name"))
    errs += validate_labels(meta.get("labels"), "metadata.labels")
    annotations = meta.get("annotations")
    if annotations is not None:
        if not isinstance(annotations, dict) or not all(
            isinstance(v, str) for v in annotations.values()
        ):
            errs.append(
                invalid(
                    "metadata.annotations",
                    annotations,
                    "must be a map of string keys to string values",
                )
            )
        else:
            for k in annotations:
                errs += [invalid("metadata.annotations", k, e) for e in label_key_errors(k)]
            size = sum(len(k.encode()) + len(v.encode()) for k, v in annotations.items())
            if size > TOTAL_ANNOTATION_SIZE:
                errs.append(
                    FieldError(
                        "metadata.annotations",
                        "FieldValueTooLong",
                        f"must have at most {TOTAL_ANNOTATION_SIZE} bytes",
                    )
                )
    return errs
