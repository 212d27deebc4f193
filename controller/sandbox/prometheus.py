"""Real Prometheus for the sandbox: scrape config, file_sd targets, and a server process helper.

Targets are the simulated pods, published through `file_sd_configs` as a JSON file rewritten
atomically whenever a pod starts or stops; each target carries `namespace`, `pod` and the pod's
labels with sanitised names, as kubernetes_sd plus a `labelmap` relabelling produce them.
`PrometheusServer` runs the real `prometheus` binary (Debian package) on a free 127.0.0.1 port
with a temporary TSDB and offers bounded HTTP queries. Note that Prometheus hands discovered
targets to the scraper at most every 5 s, so a new pod's first sample lands ~5-6 s after it
appears: wait on data (`wait_for_data`), never on a fixed sleep.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import aiohttp

from controller.sandbox.podserver import PodEndpoint, PodEvent, PodRoster, SimulatedPodRuntime

INSTALL_HINT = "apt-get update && apt-get install -y --no-install-recommends prometheus"
_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")


class PrometheusError(RuntimeError):
    """Prometheus could not be started, stopped or queried."""


class PrometheusNotInstalled(PrometheusError):
    """The `prometheus` binary is not on PATH."""


class PrometheusQueryError(PrometheusError):
    """Prometheus rejected a query (e.g. `bad_data` for a PromQL syntax error)."""

    def __init__(self, query: str, error_type: str, message: str) -> None:
        super().__init__(f"query {query!r} failed: {error_type}: {message}")
        self.query = query
        self.error_type = error_type


# -- scrape configuration ------------------------------------------------------------------


def sanitize_label_name(name: str) -> str:
    """Sanitise a Kubernetes label key into a Prometheus label name.

    As kubernetes_sd does, every character outside [a-zA-Z0-9_] becomes `_`
    (`app.kubernetes.io/name` -> `app_kubernetes_io_name`).
    """
    cleaned = _INVALID_LABEL_CHARS.sub("_", name)
    return f"_{cleaned}" if cleaned[:1].isdigit() else cleaned


def target_group(pod: PodEndpoint) -> dict[str, Any]:
    """The file_sd entry for one pod."""
    labels = {sanitize_label_name(k): str(v) for k, v in sorted(pod.labels.items())}
    # As with the usual relabelling, the pod's identity wins over a same-named pod label.
    labels["namespace"] = pod.namespace
    labels["pod"] = pod.name
    return {"targets": [pod.address], "labels": labels}


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` with `text` so a reader sees the old or the new file, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class FileSDTargets:
    """Keeps a file_sd JSON file in step with the running pods of a runtime.

    Each pod's entry is serialised once, when it starts; the file is rewritten from those
    pieces on every change (rebuilding every entry each time was O(pods) per pod event: a
    third of the sandbox's CPU in the scale bench's ramp, `bench/results/sandbox_cost.txt`).
    """

    def __init__(self, path: Path, runtime: PodRoster | None = None) -> None:
        self.path = Path(path)
        self._runtime = runtime
        self._entries: dict[tuple[str, str], str] = {}
        if runtime is not None:
            runtime.add_listener(self._on_event)
            self.write(runtime.pods())
        else:
            self.write(())

    def write(self, pods: Iterable[PodEndpoint]) -> None:
        """Rewrite the file with exactly these pods as targets."""
        self._entries = {(p.namespace, p.name): _entry(p) for p in pods}
        self._flush()

    def _flush(self) -> None:
        entries = [self._entries[key] for key in sorted(self._entries)]
        write_atomic(self.path, "[" + ",\n".join(entries) + "]\n")

    def _on_event(self, event: PodEvent) -> None:
        if self._runtime is None:
            return
        key = (event.pod.namespace, event.pod.name)
        if event.kind == "started":  # a restarted process: "stopped", then "started"
            self._entries[key] = _entry(event.pod)
        else:
            self._entries.pop(key, None)
        self._flush()

    def detach(self) -> None:
        """Stop following the runtime (the file keeps its last content)."""
        if self._runtime is not None:
            self._runtime.remove_listener(self._on_event)
            self._runtime = None


def _entry(pod: PodEndpoint) -> str:
    return json.dumps(target_group(pod), separators=(",", ":"))


def _duration(seconds: float) -> str:
    millis = round(seconds * 1000)
    if millis <= 0:
        raise ValueError(f"duration must be positive, got {seconds}")
    return f"{millis // 1000}s" if millis % 1000 == 0 else f"{millis}ms"


def prometheus_config(
    sd_file: Path,
    *,
    scrape_interval: float = 1.0,
    job_name: str = "zai-proxy",
    rule_files: Sequence[Path] = (),
) -> dict[str, Any]:
    """A Prometheus config scraping the file_sd targets every `scrape_interval` seconds."""
    interval = _duration(scrape_interval)
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(p) for p in rule_files],
        "scrape_configs": [
            {
                "job_name": job_name,
                "scrape_interval": interval,
                "scrape_timeout": interval,
                "metrics_path": "/metrics",
                "file_sd_configs": [{"files": [str(sd_file)], "refresh_interval": "1s"}],
            }
        ],
    }


def write_prometheus_config(path: Path, sd_file: Path, **options: Any) -> Path:
    """Write `prometheus_config(...)` to `path` (as JSON, which is valid YAML); return the path."""
    write_atomic(Path(path), json.dumps(prometheus_config(sd_file, **options), indent=1) + "\n")
    return Path(path)


# -- the server ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One element of an instant-vector (or scalar) query result."""

    labels: dict[str, str]
    value: float


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _open_log(path: Path) -> IO[bytes]:
    return path.open("ab")


def _log_tail(path: Path, limit: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


class PrometheusServer:
    """The real `prometheus` binary on 127.0.0.1 with a private TSDB; async start/query/stop."""

    def __init__(
        self,
        config_file: Path,
        *,
        workdir: Path | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        binary: str = "prometheus",
        extra_args: Sequence[str] = (),
        ready_timeout: float = 20.0,
    ) -> None:
        self.config_file = Path(config_file)
        self.host = host
        self.port = port
        self.binary = binary
        self.extra_args = list(extra_args)
        self.ready_timeout = ready_timeout
        # A temporary workdir is made by start() and removed by stop(), so merely constructing
        # a server leaves nothing behind.
        self._own_workdir = workdir is None
        self._workdir = Path(workdir) if workdir else None
        self._proc: asyncio.subprocess.Process | None = None
        self._log: IO[bytes] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._on_stop: list[Callable[[], None]] = []

    @classmethod
    def for_pods(
        cls,
        runtime: SimulatedPodRuntime,
        workdir: Path,
        *,
        scrape_interval: float = 1.0,
        job_name: str = "zai-proxy",
        rule_files: Sequence[Path] = (),
        **kwargs: Any,
    ) -> PrometheusServer:
        """A server scraping every pod of `runtime` through a file_sd file in `workdir`."""
        workdir = Path(workdir)
        targets = FileSDTargets(workdir / "targets.json", runtime)
        config = write_prometheus_config(
            workdir / "prometheus.yml",
            targets.path,
            scrape_interval=scrape_interval,
            job_name=job_name,
            rule_files=rule_files,
        )
        server = cls(config, workdir=workdir, **kwargs)
        server._on_stop.append(targets.detach)
        return server

    @property
    def workdir(self) -> Path:
        """Directory holding the TSDB (`data/`) and `prometheus.log`."""
        if self._workdir is None:
            raise PrometheusError("Prometheus has not been started")
        return self._workdir

    @property
    def log_file(self) -> Path:
        """Where the server's own log goes (its tail is quoted in start errors)."""
        return self.workdir / "prometheus.log"

    @property
    def url(self) -> str:
        """Base URL, e.g. `http://127.0.0.1:41234`."""
        if self.port is None:
            raise PrometheusError("Prometheus has not been started")
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The server process id while it runs (benchmarks read its CPU from /proc)."""
        return self._proc.pid if self.running and self._proc is not None else None

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self._proc is not None and self._proc.returncode is None

    async def start(self) -> None:
        """Start the process and wait until `/-/ready` answers 200 (bounded by ready_timeout)."""
        if self._proc is not None:
            return
        path = shutil.which(self.binary)
        if path is None:
            raise PrometheusNotInstalled(
                f"'{self.binary}' is not on PATH; install the real server with: {INSTALL_HINT}"
            )
        if self._workdir is None:
            self._workdir = Path(tempfile.mkdtemp(prefix="ptc-prom-"))
        self._session = aiohttp.ClientSession()
        chosen_port = self.port
        try:
            for _ in range(3):
                self.port = chosen_port or _free_port(self.host)
                if await self._spawn(path):
                    return
                if chosen_port is not None or "address already in use" not in _log_tail(
                    self.log_file
                ):
                    break
            raise PrometheusError(
                f"Prometheus did not become ready on {self.host}:{self.port}; "
                f"log tail:\n{_log_tail(self.log_file)}"
            )
        except BaseException:
            await self.stop()
            raise

    async def _spawn(self, path: str) -> bool:
        """Start one process; True once ready, False if it exited early."""
        storage = self.workdir / "data"
        storage.mkdir(parents=True, exist_ok=True)
        self._log = _open_log(self.log_file)
        self._proc = await asyncio.create_subprocess_exec(
            path,
            f"--config.file={self.config_file}",
            f"--storage.tsdb.path={storage}",
            f"--web.listen-address={self.host}:{self.port}",
            "--web.enable-lifecycle",
            *self.extra_args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ready_timeout
        while loop.time() < deadline:
            if self._proc.returncode is not None:
                await self._reap()
                return False
            try:
                if await self._get_status("/-/ready", request_timeout=1.0) == 200:
                    return True
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(0.05)
        await self._reap()
        return False

    async def _get_status(self, path: str, request_timeout: float) -> int:
        assert self._session is not None
        client_timeout = aiohttp.ClientTimeout(total=request_timeout)
        async with self._session.get(self.url + path, timeout=client_timeout) as response:
            await response.read()
            return response.status

    async def _reap(self, grace: float = 5.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), grace)
            except TimeoutError:
                proc.kill()
                await asyncio.wait_for(proc.wait(), grace)
        if self._log is not None:
            self._log.close()
            self._log = None

    async def stop(self, grace: float = 5.0) -> None:
        """SIGTERM the process (SIGKILL after `grace` s), close the client, drop temp storage."""
        for callback in self._on_stop:
            callback()
        self._on_stop.clear()
        await self._reap(grace)
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()
        if self._own_workdir and self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    async def __aenter__(self) -> PrometheusServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def reload(self, request_timeout: float = 5.0) -> None:
        """Ask Prometheus to re-read its config file (`POST /-/reload`)."""
        if self._session is None:
            raise PrometheusError("Prometheus has not been started")
        client_timeout = aiohttp.ClientTimeout(total=request_timeout)
        async with self._session.post(self.url + "/-/reload", timeout=client_timeout) as resp:
            if resp.status != 200:
                raise PrometheusError(f"reload failed: HTTP {resp.status}: {await resp.text()}")

    async def query(
        self, promql: str, *, at: float | None = None, request_timeout: float = 5.0
    ) -> list[Sample]:
        """Evaluate an instant query; return its samples (a scalar comes back as one sample)."""
        if self._session is None:
            raise PrometheusError("Prometheus has not been started")
        params = {"query": promql}
        if at is not None:
            params["time"] = repr(at)
        client_timeout = aiohttp.ClientTimeout(total=request_timeout)
        async with self._session.get(
            self.url + "/api/v1/query", params=params, timeout=client_timeout
        ) as response:
            try:
                body = await response.json()
            except (aiohttp.ContentTypeError, json.JSONDecodeError) as exc:
                raise PrometheusError(f"HTTP {response.status} from Prometheus: {exc}") from exc
        if body.get("status") != "success":
            raise PrometheusQueryError(promql, str(body.get("errorType")), str(body.get("error")))
        data = body["data"]
        if data["resultType"] == "vector":
            return [Sample(dict(r["metric"]), float(r["value"][1])) for r in data["result"]]
        if data["resultType"] == "scalar":
            return [Sample({}, float(data["result"][1]))]
        raise PrometheusError(f"unexpected result type {data['resultType']!r} for {promql!r}")

    async def wait_for_data(
        self,
        promql: str,
        timeout: float,
        predicate: Callable[[list[Sample]], bool] | None = None,
        *,
        interval: float = 0.25,
    ) -> list[Sample]:
        """Poll `promql` until it returns data (and `predicate` holds); TimeoutError otherwise.

        Transport errors are retried until the deadline; a rejected query raises at once.
        """
        check = predicate or bool
        last: list[Sample] | Exception = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(
                    f"no matching data for {promql!r} within {timeout}s; last: {last}"
                )
            try:
                last = await self.query(promql, request_timeout=min(remaining, 5.0))
                if last and check(last):
                    return last
            except PrometheusQueryError:
                raise
            except (aiohttp.ClientError, TimeoutError, PrometheusError) as exc:
                last = exc
            await asyncio.sleep(min(interval, max(0.0, deadline - loop.time())))
