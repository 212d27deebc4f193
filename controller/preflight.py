"""Preflight: the seed's "verify v2 is healthy" step, automated.

`check_world` is pure (Deployments and Pods in, findings out); `probe_pods` does the direct HTTP
probes of each canary pod (like the seed's curl to the pod IP), with a timeout per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp

from controller.config.model import Rollout
from controller.kube import DeploymentInfo, PodInfo
from controller.termination import check_termination


@dataclass(frozen=True)
class Findings:
    """What the preflight found: problems stop the rollout, waits retry, warnings are logged."""

    problems: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    probe_targets: tuple[tuple[str, str, int], ...] = field(default=())  # (pod, ip, port)

    @property
    def headlines(self) -> tuple[str, ...]:
        """Each warning's first sentence, for the decision record (Events carry the full text)."""
        return tuple(w.split(". ", 1)[0] for w in self.warnings)


def _matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_world(
    spec: Rollout,
    shared: Mapping[str, str],
    stable: DeploymentInfo | None,
    canary: DeploymentInfo | None,
    pods: Sequence[PodInfo],
    *,
    stable_serving: bool | None = None,
) -> Findings:
    """Both Deployments exist, labels fit the selectors, canary is Ready, no foreign pods.

    Also: pods ptc terminates while they serve have a preStop delay (a warning, or a problem
    with ``preflight.requirePreStop``); ``stable_serving`` overrides whether stable's pods are
    among them (default: from the shifting mode, see :mod:`controller.termination`).
    """
    problems: list[str] = []
    waiting: list[str] = []
    warnings: list[str] = []
    label = spec.version_label
    if stable is None:
        problems.append(f"stable Deployment {spec.namespace}/{spec.stable.deployment} not found")
    if canary is None:
        problems.append(f"canary Deployment {spec.namespace}/{spec.canary.deployment} not found")
    if stable is None or canary is None:
        return Findings(tuple(problems))
    for role, dep in (("stable", stable), ("canary", canary)):
        missing = {k: v for k, v in shared.items() if dep.template_labels.get(k) != v}
        if missing:
            problems.append(
                f"{role} {dep.name}'s pod template lacks the shared selector labels {missing}: "
                "its pods would get no traffic"
            )
    if canary.template_labels.get(label) != spec.canary.version:
        problems.append(
            f"canary {canary.name}'s pod template must carry {label}={spec.canary.version} "
            f"(has {label}={canary.template_labels.get(label)!r}): the flip pins to it"
        )
    stable_version = stable.template_labels.get(label)
    if spec.stable.version is not None and stable_version != spec.stable.version:
        problems.append(
            f"stable {stable.name}'s pod template must carry {label}={spec.stable.version} "
            f"(has {stable_version!r})"
        )
    if stable_version is not None and stable_version == spec.canary.version:
        problems.append(f"stable {stable.name}'s pods carry the canary's {label}={stable_version}")
    if _matches(stable.selector, canary.template_labels) or _matches(
        canary.selector, stable.template_labels
    ):
        warnings.append(
            f"the Deployments' own selectors overlap ({stable.name}: {dict(stable.selector)}, "
            f"{canary.name}: {dict(canary.selector)}); Kubernetes keeps their pods apart by "
            "owner, but kubectl and label-based tools will mix them up"
        )
    termination = check_termination(spec, stable, canary, stable_serving=stable_serving)
    if spec.preflight.require_pre_stop:
        problems.extend(
            f"{m} (refused: preflight.requirePreStop is on)" for m in termination.missing
        )
    else:
        warnings.extend(termination.missing)
    warnings.extend(termination.warnings)
    ours = {stable.name, canary.name}
    foreign = sorted(
        p.name for p in pods if _matches(shared, p.labels) and p.deployment not in ours
    )
    if foreign:
        problems.append(
            "pods outside both Deployments match the shared selector "
            f"{dict(shared)} and would receive traffic: {', '.join(foreign)}"
        )
    canary_pods = [p for p in pods if p.deployment == canary.name and not p.terminating]
    ready = [p for p in canary_pods if p.ready]
    if canary.spec_replicas > 0 and len(ready) < canary.spec_replicas:
        waiting.append(f"canary {canary.name}: {len(ready)}/{canary.spec_replicas} pods Ready")
    targets: list[tuple[str, str, int]] = []
    if spec.preflight.probe:
        for pod in ready:
            port = spec.preflight.port or (pod.container_ports[0] if pod.container_ports else 0)
            if pod.ip and port:
                targets.append((pod.name, pod.ip, port))
            else:
                problems.append(f"canary pod {pod.name} has no IP or port to probe")
    return Findings(tuple(problems), tuple(waiting), tuple(warnings), tuple(targets))


async def probe_pods(
    spec: Rollout, targets: Sequence[tuple[str, str, int]], timeout: float = 5.0
) -> list[str]:
    """GET each canary pod's health and metrics paths; the problems found (empty: all good)."""
    if not targets:
        return []
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        results = await asyncio.gather(*(_probe(session, spec, *t) for t in targets))
    return [problem for found in results for problem in found]


async def _probe(
    session: aiohttp.ClientSession, spec: Rollout, pod: str, ip: str, port: int
) -> list[str]:
    base = f"http://{ip}:{port}"
    problems: list[str] = []
    try:
        async with session.get(base + spec.preflight.health_path) as r:
            if r.status != 200:
                problems.append(f"pod {pod}: {spec.preflight.health_path} answered {r.status}")
        async with session.get(base + spec.preflight.metrics_path) as r:
            if r.status != 200:
                problems.append(f"pod {pod}: {spec.preflight.metrics_path} answered {r.status}")
            else:
                text = await r.text()
                missing = [m for m in spec.preflight.expect_metrics if m not in text]
                if missing:
                    problems.append(f"pod {pod}: /metrics lacks {', '.join(missing)}")
    except (aiohttp.ClientError, TimeoutError) as exc:
        problems.append(f"pod {pod} at {base} did not answer: {type(exc).__name__}: {exc}")
    return problems
