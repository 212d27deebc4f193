"""Helpers for the simulated-pod tests: a fake clock, Pod objects, a small exposition parser."""

from __future__ import annotations

import asyncio
import re
from typing import Any

RUNTIME_NETWORK = "127.64.0.0/10"


class FakeClock:
    """A monotonic clock that moves only when told to."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def make_pod(
    name: str,
    *,
    namespace: str = "default",
    env: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    image: str = "ghcr.io/jedarden/zai-proxy:v1.4.0",
    port: int | None = 8080,
) -> dict[str, Any]:
    """A Pod object (dict) with one zai-proxy container, like the workload simulator makes."""
    container: dict[str, Any] = {
        "name": "zai-proxy",
        "image": image,
        "env": [{"name": k, "value": v} for k, v in (env or {}).items()],
    }
    if port is not None:
        container["ports"] = [{"name": "http", "containerPort": port, "protocol": "TCP"}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": dict(labels or {})},
        "spec": {"containers": [container]},
    }


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"(?:,|$)')


def parse_exposition(text: str) -> tuple[dict[str, str], list[tuple[str, dict[str, str], float]]]:
    """Parse text format into ({family: type}, [(name, labels, value)]); raise on bad lines."""
    types: dict[str, str] = {}
    samples: list[tuple[str, dict[str, str], float]] = []
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
            continue
        if line.startswith("#") or not line:
            continue
        match = _SAMPLE.match(line)
        if match is None:
            raise ValueError(f"bad sample line: {line!r}")
        name, label_text, value = match.groups()
        labels: dict[str, str] = {}
        if label_text:
            consumed = 0
            for label in _LABEL.finditer(label_text):
                if label.start() != consumed:
                    raise ValueError(f"bad labels in {line!r}")
                labels[label.group(1)] = label.group(2)
                consumed = label.end()
            if consumed != len(label_text):
                raise ValueError(f"bad labels in {line!r}")
        samples.append((name, labels, float(value)))
    return types, samples


def other_tasks() -> set[asyncio.Task[Any]]:
    """Tasks on the running loop other than the current one (leak check)."""
    return {t for t in asyncio.all_tasks() if t is not asyncio.current_task() and not t.done()}
