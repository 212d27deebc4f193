"""Write an ordinary kubeconfig file pointing at a sandbox API server."""

from __future__ import annotations

import json
import os
from pathlib import Path


def kubeconfig_dict(
    server: str, token: str | None = None, namespace: str = "default", name: str = "ptc-sandbox"
) -> dict[str, object]:
    """A one-cluster, one-user, one-context kubeconfig as a dict."""
    user: dict[str, str] = {"token": token} if token else {}
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server}}],
        "users": [{"name": name, "user": user}],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}
        ],
        "current-context": name,
        "preferences": {},
    }


def write_kubeconfig(
    path: str | os.PathLike[str], server: str, token: str | None = None, namespace: str = "default"
) -> Path:
    """Write a kubeconfig (JSON is valid YAML) readable only by the owner; return its path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(kubeconfig_dict(server, token, namespace), indent=2))
    target.chmod(0o600)
    return target
