"""Render the chart with the real Helm library (helm-sdkpy): install into a recording API server.

helm-sdkpy has no template-only action (no ``helm template``, no dry-run flag on ``Install``), so
rendering means a real ``helm install``. The sandbox API server serves only the kinds ptc itself
uses (Pods, Deployments, Services, EndpointSlices, ConfigMaps, Events, Leases), and Helm refuses a
release with a kind the server does not know ("no matches for kind ServiceAccount"), so the chart
is installed into :class:`RecordingApiServer` instead: legacy discovery for every kind the chart
may create (with the right scope, so Helm sets namespaces as against a real cluster), and create /
get / list that keep each object exactly as Helm sent it.

Helm runs in a worker process (this file, ``--worker``) because the Go library reads
``HELM_DRIVER`` from the environment the process *started* with: setting ``os.environ`` later is
not seen, and without ``HELM_DRIVER=memory`` Helm stores its release record as a protobuf Secret.
One worker runs every install of a test session, each against its own recording server here.

    [r], lint = asyncio.run(render_many([Job("ptc", "ptc", {"replicaCount": 1})], tmp_path))
    r.objects, r.manifest, r.notes, r.error
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

CHART_DIR = Path(__file__).resolve().parents[2] / "helm" / "ptc"
KUBERNETES_VERSION = "v1.34.1"

Obj = dict[str, Any]


@dataclass(frozen=True)
class Kind:
    """A resource type the recording server advertises."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def group_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


KINDS = (
    Kind("", "v1", "configmaps", "ConfigMap"),
    Kind("", "v1", "secrets", "Secret"),
    Kind("", "v1", "serviceaccounts", "ServiceAccount"),
    Kind("", "v1", "services", "Service"),
    Kind("", "v1", "namespaces", "Namespace", namespaced=False),
    Kind("apps", "v1", "deployments", "Deployment"),
    Kind("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget"),
    Kind("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    Kind("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    Kind("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
    Kind(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "ClusterRoleBinding",
        namespaced=False,
    ),
    Kind("monitoring.coreos.com", "v1", "servicemonitors", "ServiceMonitor"),
    Kind("monitoring.coreos.com", "v1", "prometheusrules", "PrometheusRule"),
    Kind("monitoring.coreos.com", "v1alpha1", "alertmanagerconfigs", "AlertmanagerConfig"),
    # Kubernetes >= 1.30 (GA): the chart's optional claim guard
    Kind(
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicies",
        "ValidatingAdmissionPolicy",
        namespaced=False,
    ),
    Kind(
        "admissionregistration.k8s.io",
        "v1",
        "validatingadmissionpolicybindings",
        "ValidatingAdmissionPolicyBinding",
        namespaced=False,
    ),
)
# What a cluster before Kubernetes 1.30 serves: no admissionregistration.k8s.io/v1 policies.
KINDS_BEFORE_1_30 = tuple(k for k in KINDS if k.group != "admissionregistration.k8s.io")


def _status(code: int, reason: str, message: str) -> web.Response:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    return web.json_response(body, status=code)


class RecordingApiServer:
    """Just enough of a Kubernetes API for ``helm install``; keeps what Helm creates."""

    def __init__(self, kinds: tuple[Kind, ...] = KINDS) -> None:
        self.kinds = kinds
        self.objects: dict[tuple[str, str, str, str], Obj] = {}  # (gv, plural, ns, name)
        self.created: list[Obj] = []  # in the order Helm sent them
        self.unexpected: list[str] = []  # requests this server has no answer for
        self._runner: web.AppRunner | None = None
        self.port = 0

    async def start(self) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def kubeconfig(self, path: Path, namespace: str) -> Path:
        """A kubeconfig (YAML-compatible JSON) pointing at this server."""
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "rec", "cluster": {"server": f"http://127.0.0.1:{self.port}"}}],
            "users": [{"name": "rec", "user": {"token": "helm"}}],
            "contexts": [
                {
                    "name": "rec",
                    "context": {"cluster": "rec", "user": "rec", "namespace": namespace},
                }
            ],
            "current-context": "rec",
        }
        path.write_text(json.dumps(doc))
        return path

    # --- HTTP ------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if request.method == "GET":
            discovery = self._discovery(parts)
            if discovery is not None:
                return web.json_response(discovery)
        resolved = self._resolve(parts)
        if resolved is None:
            self.unexpected.append(f"{request.method} {request.path_qs}")
            return _status(404, "NotFound", f"the server could not find {request.path}")
        kind, namespace, name = resolved
        key_prefix = (kind.group_version, kind.plural, namespace)
        if request.method == "POST" and name is None:
            return await self._create(request, kind, namespace)
        if request.method == "GET" and name is not None:
            obj = self.objects.get((*key_prefix, name))
            if obj is None:
                return _status(404, "NotFound", f'{kind.plural} "{name}" not found')
            return web.json_response(obj)
        if request.method == "GET":
            items = [o for k, o in self.objects.items() if k[:3] == key_prefix]
            return web.json_response(
                {
                    "kind": f"{kind.kind}List",
                    "apiVersion": kind.group_version,
                    "metadata": {"resourceVersion": "1"},
                    "items": items,
                }
            )
        self.unexpected.append(f"{request.method} {request.path_qs}")
        return _status(405, "MethodNotAllowed", f"{request.method} not supported here")

    async def _create(self, request: web.Request, kind: Kind, namespace: str) -> web.Response:
        obj = json.loads(await request.read())
        meta = obj.setdefault("metadata", {})
        name = meta.get("name", "")
        if kind.namespaced:
            if meta.get("namespace", namespace) != namespace:
                return _status(400, "BadRequest", "namespace in body does not match the URL")
            meta["namespace"] = namespace
        elif "namespace" in meta:
            return _status(400, "BadRequest", f"{kind.kind} is cluster-scoped: no namespace")
        key = (kind.group_version, kind.plural, namespace, name)
        if key in self.objects:
            return _status(409, "AlreadyExists", f'{kind.plural} "{name}" already exists')
        self.created.append(json.loads(json.dumps(obj)))  # as sent, before server fields
        meta.update(
            uid=str(uuid.uuid4()),
            resourceVersion=str(len(self.objects) + 2),
            creationTimestamp="2026-01-01T00:00:00Z",
        )
        self.objects[key] = obj
        return web.json_response(obj, status=201)

    def _discovery(self, parts: list[str]) -> Obj | None:
        if parts == ["version"]:
            major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
            return {"major": major, "minor": minor, "gitVersion": KUBERNETES_VERSION}
        if parts == ["api"]:
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if parts == ["apis"]:
            groups = sorted({(k.group, k.version) for k in self.kinds if k.group})
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [
                    {
                        "name": g,
                        "versions": [{"groupVersion": f"{g}/{v}", "version": v}],
                        "preferredVersion": {"groupVersion": f"{g}/{v}", "version": v},
                    }
                    for g, v in groups
                ],
            }
        gv = None
        if len(parts) == 2 and parts[0] == "api":
            gv = parts[1]
        elif len(parts) == 3 and parts[0] == "apis":
            gv = f"{parts[1]}/{parts[2]}"
        if gv is None:
            return None
        kinds = [k for k in self.kinds if k.group_version == gv]
        if not kinds:
            return None
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": gv,
            "resources": [
                {
                    "name": k.plural,
                    "singularName": k.kind.lower(),
                    "namespaced": k.namespaced,
                    "kind": k.kind,
                    "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
                }
                for k in kinds
            ],
        }

    def _resolve(self, parts: list[str]) -> tuple[Kind, str, str | None] | None:
        """(kind, namespace, name) for a resource URL, or None."""
        if parts[:2] == ["api", "v1"]:
            gv, rest = "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            gv, rest = f"{parts[1]}/{parts[2]}", parts[3:]
        else:
            return None
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 2:
            return None
        for kind in self.kinds:
            if kind.group_version == gv and kind.plural == rest[0]:
                if kind.namespaced != bool(namespace):
                    return None
                return kind, namespace, rest[1] if len(rest) == 2 else None
        return None


@dataclass
class Job:
    """One ``helm install``."""

    release: str
    namespace: str
    values: Obj = field(default_factory=dict)
    chart: Path | None = None  # default: the chart render_many was given
    kinds: tuple[Kind, ...] = KINDS  # what the recording server serves


@dataclass
class Rendered:
    """What one install produced: objects as Helm created them, or Helm's error."""

    job: Job
    objects: list[Obj] = field(default_factory=list)
    manifest: str = ""
    notes: str = ""
    error: str | None = None
    unexpected: list[str] = field(default_factory=list)

    def find(self, kind: str, name: str | None = None) -> list[Obj]:
        """Created objects of `kind` (and `name`)."""
        return [
            o
            for o in self.objects
            if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)
        ]

    def one(self, kind: str) -> Obj:
        """The only object of `kind`."""
        found = self.find(kind)
        assert len(found) == 1, f"expected one {kind}, got {len(found)}"
        return found[0]


WORKER_TIMEOUT = 120.0


async def render_many(
    jobs: list[Job],
    workdir: Path,
    *,
    chart: Path = CHART_DIR,
    lint: bool = False,
    package_to: Path | None = None,
) -> tuple[list[Rendered], Obj | None]:
    """Install each job into its own recording server (one Helm worker process for all).

    Also lints the chart (the result, or None) and with `package_to` packages it there.
    """
    servers = [RecordingApiServer(job.kinds) for job in jobs]
    for server in servers:
        await server.start()
    try:
        request = {
            "chart": str(chart),
            "lint": lint,
            "package_to": str(package_to) if package_to else None,
            "jobs": [
                {
                    "release": job.release,
                    "namespace": job.namespace,
                    "values": job.values,
                    "chart": str(job.chart or chart),
                    "kubeconfig": str(server.kubeconfig(workdir / f"kc-{i}", job.namespace)),
                }
                for i, (job, server) in enumerate(zip(jobs, servers, strict=True))
            ],
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            str(Path(__file__).resolve()),
            "--worker",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "HELM_DRIVER": "memory"},
        )
        out, err = await asyncio.wait_for(
            proc.communicate(json.dumps(request).encode()), WORKER_TIMEOUT
        )
        if proc.returncode != 0:
            raise RuntimeError(f"helm worker failed ({proc.returncode}): {err.decode()[-2000:]}")
        answer = json.loads(out)
    finally:
        for server in servers:
            await server.stop()
    rendered = []
    for job, server, result in zip(jobs, servers, answer["results"], strict=True):
        release = result.get("release") or {}
        rendered.append(
            Rendered(
                job,
                objects=server.created,
                manifest=release.get("manifest", ""),
                notes=(release.get("info") or {}).get("notes", ""),
                error=result.get("error"),
                unexpected=server.unexpected,
            )
        )
    return rendered, answer.get("lint")


def _worker() -> None:
    """Run the installs (and lint) a parent asked for on stdin; answer JSON on stdout."""
    import helm_sdkpy

    request = json.load(sys.stdin)
    chart = request["chart"]

    async def run() -> Obj:
        results = []
        for job in request["jobs"]:
            config = helm_sdkpy.Configuration(
                namespace=job["namespace"], kubeconfig=job["kubeconfig"]
            )
            try:
                release = await helm_sdkpy.Install(config).run(
                    job["release"],
                    job["chart"],
                    values=job["values"] or None,
                    wait=False,
                    timeout=60,
                )
                results.append({"release": release})
            except helm_sdkpy.HelmError as exc:
                results.append({"error": str(exc)})
        lint = None
        if request["lint"]:
            lint = await helm_sdkpy.Lint(helm_sdkpy.Configuration(namespace="ptc")).run(chart)
        if request["package_to"]:
            config = helm_sdkpy.Configuration(namespace="ptc")
            await helm_sdkpy.Package(config).run(chart, dest_dir=request["package_to"])
        return {"results": results, "lint": lint}

    json.dump(asyncio.run(run()), sys.stdout, default=str)


if __name__ == "__main__" and sys.argv[1:] == ["--worker"]:
    _worker()
