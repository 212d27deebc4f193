"""Evaluate a rendered ValidatingAdmissionPolicy and its binding on one request, with cel-python.

There is no Kubernetes API server here to run the chart's claim guard, so this mirrors what one
does with a policy (admissionregistration.k8s.io/v1, Kubernetes >= 1.30; the dispatcher in
k8s.io/apiserver/pkg/admission/plugin/policy/validating), for the parts the chart uses:

1. ``matchConstraints.resourceRules`` (operation, group, version, resource; a subresource such as
   ``deployments/scale`` is a resource of its own and matches only a rule naming it);
2. the binding's ``matchResources`` (absent: every namespace) and ``validationActions``;
3. ``matchConditions``: any false skips the policy; an error, with failurePolicy Fail, denies;
4. ``variables``, each visible to later expressions as ``variables.<name>``;
5. ``validations``: the first false one denies with its ``message`` and ``reason`` (default
   Invalid); an error denies under failurePolicy Fail.

Differences from Kubernetes, kept out of what the chart may use (the template says so too):
cel-python has none of Kubernetes' CEL extension libraries (strings, lists, optionals, quantity,
authz...), so an expression using them fails here (a test failure, not a silent pass); Kubernetes
evaluates variables lazily, here they are evaluated in order up front (stricter: an error in an
unused variable denies here only); Kubernetes compares lists of `x-kubernetes-list-type` set/map
regardless of order, cel-python in order (stricter). Reading an absent field is an error in both.

The objects are given to the policy as Kubernetes encodes its typed objects: ObjectMeta's empty
labels, annotations, ownerReferences and finalizers are absent (`omitempty`), so a Deployment
whose last annotation was removed has no `metadata.annotations` at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import celpy

Obj = dict[str, Any]

# reason -> the HTTP status Kubernetes answers a denial with (reasonToCode)
STATUS_OF_REASON = {
    "Unauthorized": 401,
    "Forbidden": 403,
    "Invalid": 422,
    "RequestEntityTooLarge": 413,
}


@dataclass(frozen=True)
class Request:
    """One admission request: who does what to which object (old and new)."""

    username: str
    operation: str  # CREATE, UPDATE, DELETE
    namespace: str
    name: str
    old: Obj | None
    new: Obj | None
    group: str = "apps"
    version: str = "v1"
    resource: str = "deployments"
    subresource: str = ""

    def as_cel(self) -> Obj:
        """The `request` variable (the AdmissionRequest fields the chart may read)."""
        return {
            "operation": self.operation,
            "namespace": self.namespace,
            "name": self.name,
            "userInfo": {"username": self.username},
            "resource": {"group": self.group, "version": self.version, "resource": self.resource},
            "subResource": self.subresource,
        }


@dataclass(frozen=True)
class Verdict:
    """What the API server would answer: admitted, or denied with status code and message."""

    allowed: bool
    matched: bool  # whether the policy judged the request at all
    code: int = 200
    message: str = ""  # why it was denied, or (Warn/Audit) what it would have denied


_ENV = celpy.Environment()


def _evaluate(expression: str, activation: Obj) -> Any:
    """The expression's value; raises CELEvalError however cel-python reports the error."""
    program = _ENV.program(_ENV.compile(expression))
    result = program.evaluate(activation)
    if isinstance(result, celpy.CELEvalError):
        raise result
    return result


def _encoded(obj: Obj | None) -> Obj | None:
    """`obj` as the API server hands it to a policy (see the module docstring)."""
    if obj is None or "metadata" not in obj:
        return obj
    meta = {k: v for k, v in obj["metadata"].items() if k not in OMIT_EMPTY or v}
    return {**obj, "metadata": meta}


OMIT_EMPTY = ("labels", "annotations", "ownerReferences", "finalizers")


def _rule_matches(rule: Obj, request: Request) -> bool:
    resource = request.resource + (f"/{request.subresource}" if request.subresource else "")

    def has(key: str, value: str) -> bool:
        return "*" in rule[key] or value in rule[key]

    return (
        has("operations", request.operation)
        and has("apiGroups", request.group)
        and has("apiVersions", request.version)
        and has("resources", resource)
    )


def _denied(policy: Obj, binding: Obj, message: str, reason: str) -> Verdict:
    text = (
        f"ValidatingAdmissionPolicy '{policy['metadata']['name']}' with binding "
        f"'{binding['metadata']['name']}' denied request: {message}"
    )
    if "Deny" not in binding["spec"]["validationActions"]:  # Warn/Audit: recorded, admitted
        return Verdict(True, True, message=text)
    return Verdict(False, True, STATUS_OF_REASON[reason], text)


def admit(policy: Obj, binding: Obj, request: Request) -> Verdict:
    """The policy's verdict on `request` under `binding` (see the module docstring)."""
    spec = policy["spec"]
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert "paramKind" not in spec and "paramRef" not in binding["spec"], "params: not mirrored"
    match = binding["spec"].get("matchResources")
    assert match is None, f"binding scope not mirrored here: {match}"
    if not any(_rule_matches(r, request) for r in spec["matchConstraints"]["resourceRules"]):
        return Verdict(True, False)
    fail_closed = spec.get("failurePolicy", "Fail") == "Fail"
    activation: Obj = {
        "object": celpy.json_to_cel(_encoded(request.new)),
        "oldObject": celpy.json_to_cel(_encoded(request.old)),
        "request": celpy.json_to_cel(request.as_cel()),
    }
    errors = []
    for condition in spec.get("matchConditions", []):
        try:
            if not bool(_evaluate(condition["expression"], activation)):
                return Verdict(True, False)  # any false skips, whatever the others' errors
        except celpy.CELEvalError as exc:
            errors.append(f"match condition {condition['name']}: {exc}")
    if errors:
        if fail_closed:
            return _denied(policy, binding, errors[0], "Invalid")
        return Verdict(True, False)
    variables: Obj = {}
    activation["variables"] = celpy.json_to_cel({})
    for variable in spec.get("variables", []):
        try:
            variables[variable["name"]] = _evaluate(variable["expression"], activation)
        except celpy.CELEvalError as exc:
            if fail_closed:
                return _denied(policy, binding, f"variable {variable['name']}: {exc}", "Invalid")
            return Verdict(True, True)
        activation["variables"] = celpy.celtypes.MapType(
            {celpy.celtypes.StringType(k): v for k, v in variables.items()}
        )
    for validation in spec["validations"]:
        try:
            result = _evaluate(validation["expression"], activation)
        except celpy.CELEvalError as exc:
            if fail_closed:
                return _denied(policy, binding, f"expression error: {exc}", "Invalid")
            continue
        assert isinstance(result, celpy.celtypes.BoolType), (validation["expression"], result)
        if not result:
            message = validation.get("message") or f"failed expression: {validation['expression']}"
            return _denied(policy, binding, message, validation.get("reason", "Invalid"))
    return Verdict(True, True)
