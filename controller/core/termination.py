"""Which pods ptc terminates while they serve, and whether their preStop hook covers it (pure).

When a pod is deleted, Kubernetes removes its endpoint and starts the kubelet's shutdown at the
same time; clients (kube-proxy on every node) learn of the removal a moment later. A container
that exits at SIGTERM — the real zai-proxy does — refuses or resets whatever still reaches it in
that moment. A ``preStop`` sleep delays the SIGTERM until every client has moved on.

ptc terminates serving pods in two places: the standard shifting mode scales the stable
Deployment down while the shared selector still sends it traffic, and a rollback scales the
canary down while it still serves when the rollback selector is the shared one (``stable`` has no
``version``). The flip, by contrast, takes stable out of the Service before scaling it to 0.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from controller.core.config.model import Rollout
from controller.core.objects import ContainerInfo, DeploymentInfo

RECOMMENDED_SLEEP = 10  # seconds: endpoint propagation is ~1 s; the rest covers short requests
GRACE_MARGIN = 5  # seconds past the sleep before the kubelet's SIGKILL


@dataclass(frozen=True)
class TerminationFindings:
    """Missing preStop delays (``missing``) and hooks the grace period cuts short."""

    missing: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def stable_terminated_while_serving(spec: Rollout) -> bool:
    """Standard shifting scales stable down under traffic; the surge mode does not."""
    # `shifting` arrives with the surge mode; until then every rollout is standard.
    return str(getattr(spec, "shifting", "standard")) != "surge"


def serving_containers(dep: DeploymentInfo) -> tuple[ContainerInfo, ...]:
    """The containers that take traffic: those declaring a port (all when none declares one)."""
    with_ports = tuple(c for c in dep.containers if c.ports)
    return with_ports or dep.containers


def patch_command(namespace: str, dep: DeploymentInfo, containers: Sequence[ContainerInfo]) -> str:
    """The kubectl patch that gives these containers a preStop sleep (Kubernetes >= 1.30)."""
    spec: dict[str, object] = {
        "containers": [
            {"name": c.name, "lifecycle": {"preStop": {"sleep": {"seconds": RECOMMENDED_SLEEP}}}}
            for c in containers
        ]
    }
    if dep.termination_grace_seconds <= RECOMMENDED_SLEEP:
        spec["terminationGracePeriodSeconds"] = RECOMMENDED_SLEEP + GRACE_MARGIN
    body = json.dumps({"spec": {"template": {"spec": spec}}}, separators=(",", ":"))
    return f"kubectl -n {namespace} patch deployment {dep.name} -p '{body}'"


def _missing(role: str, why: str, namespace: str, dep: DeploymentInfo) -> str | None:
    bare = [c for c in serving_containers(dep) if c.pre_stop is None]
    if not bare:
        return None
    names = ", ".join(c.name for c in bare)
    return (
        f"{role} {dep.name}: container {names} has no preStop delay, and {why}. A pod that "
        "exits at SIGTERM (zai-proxy does) refuses or resets the requests that reach it before "
        "every client has seen its endpoint go. Fix: "
        f"{patch_command(namespace, dep, bare)} (Kubernetes >= 1.30; on older clusters "
        f'`lifecycle.preStop.exec.command: ["sleep", "{RECOMMENDED_SLEEP}"]` if the image has '
        "a sleep binary), keeping terminationGracePeriodSeconds above the sleep"
    )


def _cut_short(role: str, dep: DeploymentInfo) -> list[str]:
    grace = dep.termination_grace_seconds
    out = []
    for c in dep.containers:
        seconds = c.pre_stop.seconds if c.pre_stop is not None else None
        if seconds is not None and seconds >= grace:
            out.append(
                f"{role} {dep.name}: container {c.name}'s preStop sleeps {seconds:g}s but "
                f"terminationGracePeriodSeconds is {grace}. The kubelet kills the pod mid-hook "
                f"when the grace period ends; set it above the sleep (e.g. {seconds + 5:g})"
            )
    return out


def check_termination(
    spec: Rollout,
    stable: DeploymentInfo,
    canary: DeploymentInfo,
    *,
    stable_serving: bool | None = None,
) -> TerminationFindings:
    """Serving pods ptc will terminate without a preStop delay; hooks longer than the grace.

    ``stable_serving`` says whether stable pods are terminated while they serve during the
    steps (default: from the rollout's shifting mode).
    """
    if stable_serving is None:
        stable_serving = stable_terminated_while_serving(spec)
    missing: list[str] = []
    if stable_serving:
        found = _missing(
            "stable",
            "ptc scales it down while it serves (standard shifting)",
            spec.namespace,
            stable,
        )
        if found:
            missing.append(found)
    if spec.stable.version is None:
        # The rollback selector is the shared one, which still matches canary's pods.
        found = _missing(
            "canary",
            "a rollback scales it down while it still serves (stable has no `version`, so the "
            "rollback selector keeps matching its pods)",
            spec.namespace,
            canary,
        )
        if found:
            missing.append(found)
    warnings = _cut_short("stable", stable) + _cut_short("canary", canary)
    return TerminationFindings(tuple(missing), tuple(warnings))
