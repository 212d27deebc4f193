"""A simulated zai-proxy pod's settings, read from its container env as the real binary reads them.

Every env var of the real proxy that shapes a decision (`proxy/config/config.go`, research note
section 3): invalid values silently fall back to the default, as they do there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from controller.sandbox.ratelimiter import (
    DEFAULT_STATE_MAX_AGE,
    LimiterSettings,
    parse_go_duration,
)

DEFAULT_PORT = 8080
DEFAULT_VARIANT = "production"
DEFAULT_STATE_FILE = "/var/lib/zai-proxy/ceiling.json"


@dataclass(frozen=True)
class ProxyTuning:
    """Sandbox-only knobs (no env var in the real proxy); defaults are the real timings.

    `adjustment_window` is the limiter's window in seconds (30 in the real proxy);
    `retry_backoff` scales every retry wait (the 1/2/4 s curve and Retry-After; 1.0 is real
    time). Pod env `SANDBOX_RATE_LIMIT_WINDOW` and `SANDBOX_RETRY_BACKOFF` override them per
    pod, so a demo can speed up one Deployment only.
    """

    adjustment_window: float = 30.0
    retry_backoff: float = 1.0


def _env_float(env: Mapping[str, str], key: str, default: float, *, positive: bool) -> float:
    # The real proxy falls back to the default on unset, unparsable or out-of-range values.
    try:
        value = float(env[key])
    except (KeyError, ValueError):
        return default
    if math.isnan(value) or (value <= 0 if positive else value < 0):
        return default
    return value


def _env_int(env: Mapping[str, str], key: str, default: int, *, positive: bool) -> int:
    try:
        value = int(env[key])
    except (KeyError, ValueError):
        return default
    return default if (value <= 0 if positive else value < 0) else value


def _env_fraction(env: Mapping[str, str], key: str, default: float, *, closed_top: bool) -> float:
    value = _env_float(env, key, default, positive=True)
    return value if (value <= 1 if closed_top else value < 1) else default


@dataclass(frozen=True)
class ProxyConfig:
    """A pod's proxy settings, read from its container env like the real binary."""

    limiter: LimiterSettings = field(default_factory=LimiterSettings)
    max_workers: int = 10
    max_retries: int = 3
    variant: str = DEFAULT_VARIANT
    version: str = "unknown"
    commit: str = "unknown"
    build_time: str = "unknown"
    state_file: str = DEFAULT_STATE_FILE
    # Which filesystem the state file is on (`state_volume`): ("container",) unless a volume
    # is mounted over its directory.
    state_volume: tuple[str, ...] = ("container",)
    port: int = DEFAULT_PORT
    tuning: ProxyTuning = field(default_factory=ProxyTuning)

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        image: str = "",
        port: int = DEFAULT_PORT,
        tuning: ProxyTuning | None = None,
    ) -> ProxyConfig:
        """Build from env vars with the real names (RATE_LIMIT_*, MAX_WORKERS, ...)."""
        base = tuning or ProxyTuning()
        tuning = ProxyTuning(
            adjustment_window=_env_float(
                env, "SANDBOX_RATE_LIMIT_WINDOW", base.adjustment_window, positive=False
            ),
            retry_backoff=_env_float(
                env, "SANDBOX_RETRY_BACKOFF", base.retry_backoff, positive=False
            ),
        )
        max_age = parse_go_duration(env.get("RATE_LIMIT_STATE_MAX_AGE", ""))
        defaults = LimiterSettings()
        limiter = LimiterSettings(
            initial=_env_float(env, "RATE_LIMIT_INITIAL", defaults.initial, positive=True),
            minimum=_env_float(env, "RATE_LIMIT_MIN", defaults.minimum, positive=True),
            maximum=_env_float(env, "RATE_LIMIT_MAX", defaults.maximum, positive=True),
            ceiling_alpha=_env_fraction(
                env, "RATE_LIMIT_CEILING_ALPHA", defaults.ceiling_alpha, closed_top=True
            ),
            hold_margin=_env_fraction(
                env, "RATE_LIMIT_HOLD_MARGIN", defaults.hold_margin, closed_top=False
            ),
            probe_interval=_env_int(
                env, "RATE_LIMIT_PROBE_INTERVAL", defaults.probe_interval, positive=True
            ),
            adjustment_window=tuning.adjustment_window,
            state_max_age=max_age if max_age is not None and max_age > 0 else DEFAULT_STATE_MAX_AGE,
        )
        return cls(
            limiter=limiter,
            max_workers=_env_int(env, "MAX_WORKERS", 10, positive=True),
            max_retries=_env_int(env, "MAX_RETRIES", 3, positive=False),
            variant=env.get("DEPLOYMENT_VARIANT") or DEFAULT_VARIANT,
            version=env.get("ZAI_PROXY_VERSION") or image_tag(image) or "unknown",
            commit=env.get("ZAI_PROXY_COMMIT") or "unknown",
            build_time=env.get("ZAI_PROXY_BUILD_TIME") or "unknown",
            state_file=env.get("RATE_LIMIT_STATE_FILE") or DEFAULT_STATE_FILE,
            port=port,
            tuning=tuning,
        )

    @classmethod
    def from_pod(cls, pod: Mapping[str, Any], *, tuning: ProxyTuning | None = None) -> ProxyConfig:
        """Build from a Pod object (dict): its zai-proxy container's env, image and port."""
        container = proxy_container(pod)
        env = {
            str(item["name"]): str(item["value"])
            for item in container.get("env") or []
            if "name" in item and item.get("value") is not None
        }
        ports = [p for p in container.get("ports") or [] if p.get("protocol", "TCP") == "TCP"]
        port = int(ports[0]["containerPort"]) if ports else DEFAULT_PORT
        config = cls.from_env(env, image=str(container.get("image", "")), port=port, tuning=tuning)
        return replace(config, state_volume=state_volume(pod, container, config.state_file))


def state_volume(
    pod: Mapping[str, Any], container: Mapping[str, Any], path: str
) -> tuple[str, ...]:
    """The filesystem `path` is on in this container, as a key for the sandbox's state files.

    The mount with the longest mountPath containing `path` decides: an emptyDir lives as long
    as the pod (it survives a process restart), a PersistentVolumeClaim as long as the claim, a
    hostPath as long as the node (every pod of the sandbox's one node shares it - and with it
    the one default state-file path). Without a mount the file is in the container's own
    layer, which a restarted container does not get back.
    """
    best: Mapping[str, Any] | None = None
    longest = -1
    for mount in container.get("volumeMounts") or []:
        mount_path = str(mount.get("mountPath") or "").rstrip("/")
        covers = path == mount_path or path.startswith(mount_path + "/")
        if mount_path and covers and len(mount_path) > longest:
            best, longest = mount, len(mount_path)
    if best is None:
        return ("container",)
    volumes = {v.get("name"): v for v in (pod.get("spec") or {}).get("volumes") or []}
    volume = volumes.get(best.get("name")) or {}
    if volume.get("persistentVolumeClaim"):
        return ("pvc", str(volume["persistentVolumeClaim"].get("claimName", "")))
    if volume.get("hostPath"):
        return ("hostPath", str(volume["hostPath"].get("path", "")))
    if volume.get("emptyDir") is not None:
        return ("emptyDir", str(best.get("name")))
    return ("container",)


def proxy_container(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    """The container that runs the proxy: the one named `zai-proxy`, else the first."""
    containers: list[Mapping[str, Any]] = list((pod.get("spec") or {}).get("containers") or [])
    if not containers:
        return {}
    for container in containers:
        if container.get("name") == "zai-proxy":
            return container
    return containers[0]


def image_tag(image: str) -> str:
    """Tag of an image reference (`repo/zai-proxy:v2.1` -> `v2.1`), or '' when untagged."""
    ref = image.split("@", 1)[0]
    name, _, tag = ref.rpartition(":")
    return tag if name and "/" not in tag else ""
