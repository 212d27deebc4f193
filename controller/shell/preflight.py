"""Preflight: the seed's "verify v2 is healthy" step, automated.

`check_world` (Deployments and Pods in, findings out) and `judge_probe` (one pod's answers in,
findings out) are pure; `probe_pods` does the direct HTTP probes of each canary pod (like the
seed's curl to the pod IP), with a timeout per request.

Every finding is a *problem* (time cannot fix it: the rollout fails at once) or a *wait* (time
may fix it: preflight runs again, up to `preflight.timeout`). README "Preflight rules" lists
each check and why it is one or the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiohttp

from controller.core.config.model import Rollout
from controller.core.durations import format_duration
from controller.core.termination import check_termination
from controller.shell.kube import AutoscalerInfo, DeploymentInfo, PodInfo
from controller.shell.providers.exposition import ExpositionError, parse


@dataclass(frozen=True)
class ProbeTarget:
    """A Ready canary pod to probe, and when its containers started."""

    pod: str
    ip: str
    port: int
    started_at: datetime | None = None


@dataclass(frozen=True)
class Findings:
    """What the preflight found: problems stop the rollout, waits retry, warnings are logged."""

    problems: tuple[str, ...] = ()
    waiting: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    probe_targets: tuple[ProbeTarget, ...] = field(default=())

    def plus(self, other: Findings) -> Findings:
        """Both sets of findings."""
        return Findings(
            self.problems + other.problems,
            self.waiting + other.waiting,
            self.warnings + other.warnings,
            self.probe_targets + other.probe_targets,
        )

    @property
    def headlines(self) -> tuple[str, ...]:
        """Each warning's first sentence, for the decision record (Events carry the full text)."""
        return tuple(w.split(". ", 1)[0] for w in self.warnings)


@dataclass(frozen=True)
class ProbeAnswer:
    """What one pod answered; `error` set when it did not answer at all."""

    health_status: int | None = None
    metrics_status: int | None = None
    metrics_text: str | None = None
    error: str | None = None


def check_autoscalers(spec: Rollout, autoscalers: Sequence[AutoscalerInfo]) -> Findings:
    """No HorizontalPodAutoscaler may scale the stable or canary Deployment.

    An HPA keeps its target's replicas within [min, max] and acts every 15 s: it would undo each
    of ptc's absolute counts — even one with minReplicas = maxReplicas resets the Deployment to
    that count. A problem, or a warning with ``preflight.allowAutoscalers``.
    """
    ours = {spec.stable.deployment: "stable", spec.canary.deployment: "canary"}
    found: list[str] = []
    for hpa in sorted(autoscalers, key=lambda h: h.name):
        role = ours.get(hpa.target_name) if hpa.target_kind == "Deployment" else None
        if role is None:
            continue
        found.append(
            f"HorizontalPodAutoscaler {hpa.name} scales the {role} Deployment "
            f"{hpa.target_name} ({hpa.min_replicas}-{hpa.max_replicas} replicas). It would undo "
            "ptc's replica counts at every step, even with minReplicas = maxReplicas. Remove it "
            f"for the rollout (kubectl -n {spec.namespace} delete hpa {hpa.name}) and create it "
            f"for {spec.canary.deployment} once the rollout has completed"
            + ("" if spec.preflight.allow_autoscalers else "; or set preflight.allowAutoscalers")
        )
    if spec.preflight.allow_autoscalers:
        return Findings(warnings=tuple(found))
    return Findings(problems=tuple(found))


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
    among them (default: from the shifting mode, see :mod:`controller.core.termination`).
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
    strays = [p for p in pods if _matches(shared, p.labels) and p.deployment not in ours]
    # A stray pod stays until someone removes it; one already terminating is on its way out.
    foreign = sorted(p.name for p in strays if not p.terminating)
    leaving = sorted(p.name for p in strays if p.terminating)
    if foreign:
        problems.append(
            "pods outside both Deployments match the shared selector "
            f"{dict(shared)} and would receive traffic: {', '.join(foreign)}"
        )
    if leaving:
        waiting.append(
            f"terminating pods outside both Deployments still match the shared selector: "
            f"{', '.join(leaving)}"
        )
    canary_pods = [p for p in pods if p.deployment == canary.name and not p.terminating]
    ready = [p for p in canary_pods if p.ready]
    if canary.spec_replicas > 0 and len(ready) < canary.spec_replicas:
        waiting.append(f"canary {canary.name}: {len(ready)}/{canary.spec_replicas} pods Ready")
    targets: list[ProbeTarget] = []
    if spec.preflight.probe:
        for pod in ready:
            port = spec.preflight.port or (pod.container_ports[0] if pod.container_ports else 0)
            if not port:
                problems.append(
                    f"canary pod {pod.name} declares no container port: set preflight.port"
                )
            elif not pod.ip:
                waiting.append(f"canary pod {pod.name} has no IP yet")
            else:
                targets.append(ProbeTarget(pod.name, pod.ip, port, pod.started_at))
    return Findings(tuple(problems), tuple(waiting), tuple(warnings), tuple(targets))


async def probe_pods(
    spec: Rollout, targets: Sequence[ProbeTarget], *, now: datetime, timeout: float = 5.0
) -> Findings:
    """GET each canary pod's health and metrics paths, and judge the answers."""
    if not targets:
        return Findings()
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        answers = await asyncio.gather(*(_probe(session, spec, t) for t in targets))
    judged = [judge_probe(spec, t, a, now) for t, a in zip(targets, answers, strict=True)]
    return Findings(
        tuple(p for f in judged for p in f.problems),
        tuple(w for f in judged for w in f.waiting),
    )


async def _probe(session: aiohttp.ClientSession, spec: Rollout, target: ProbeTarget) -> ProbeAnswer:
    base = f"http://{target.ip}:{target.port}"
    health = None
    try:
        async with session.get(base + spec.preflight.health_path) as r:
            health = r.status
        async with session.get(base + spec.preflight.metrics_path) as r:
            # Bytes, decoded leniently: a body that is not text fails the parse, not the probe.
            body = (await r.read()).decode("utf-8", "replace") if r.status == 200 else None
            return ProbeAnswer(health, r.status, body)
    except (aiohttp.ClientError, TimeoutError) as exc:
        detail = str(exc) or "no answer in time"
        return ProbeAnswer(health, error=f"{base} did not answer: {type(exc).__name__}: {detail}")


def judge_probe(spec: Rollout, target: ProbeTarget, answer: ProbeAnswer, now: datetime) -> Findings:
    """One pod's answers as problems (time will not fix them) or waits (it may)."""
    pre = spec.preflight
    pod = target.pod
    problems: list[str] = []
    waiting: list[str] = []
    if answer.error is not None:
        # Refused or timed out: the process is still starting, or briefly overloaded.
        return Findings(waiting=(f"pod {pod}: {answer.error}",))
    for path, status in (
        (pre.health_path, answer.health_status),
        (pre.metrics_path, answer.metrics_status),
    ):
        if status is None or status == 200:
            continue
        message = f"pod {pod}: {path} answered {status}"
        if status >= 500:
            waiting.append(message)  # not ready yet, or overloaded: may pass on the next run
        else:
            # 404, 401, 403...: a wrong path, port or auth; asking again will not change it.
            problems.append(message)
    if problems or waiting or answer.metrics_text is None:
        return Findings(tuple(problems), tuple(waiting))
    try:
        exposition = parse(answer.metrics_text)
    except ExpositionError as exc:
        return Findings(problems=(f"pod {pod}: {pre.metrics_path} is not Prometheus text: {exc}",))
    present = {s.name for s in exposition.samples}
    present |= {exposition.family_of(name) for name in present}
    missing = [m for m in pre.at_start() if m not in present]
    if not missing:
        return Findings()
    lacking = f"pod {pod}: {pre.metrics_path} lacks {', '.join(missing)}"
    age = now - target.started_at if target.started_at is not None else None
    if age is None or age < pre.start_grace:
        # The message stays the same from one run to the next: a wait is recorded once.
        return Findings(
            waiting=(f"{lacking} yet (pod younger than startGrace {_secs(pre.start_grace)})",)
        )
    return Findings(
        problems=(
            f"{lacking} {_secs(age)} after start; a family that appears only with traffic "
            "belongs in preflight.metrics.lazy",
        )
    )


def _secs(delta: timedelta) -> str:
    return format_duration(timedelta(seconds=round(max(delta.total_seconds(), 0.0))))
