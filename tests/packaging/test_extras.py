"""`pip install ptc` (no extras) is a working controller and CLI; extras match the import graph.

The first tests run a fresh interpreter in which matplotlib (ptc[report]) and the sandbox and
demo (left out of the controller image) cannot be imported, as in the image, and check what a
user of that installation sees.
"""

from __future__ import annotations

import ast
import functools
import json
import subprocess
import sys
import tomllib
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

# Blocks the modules a slim installation lacks and records every attempt to import them.
SLIM = """
import contextlib, io, json, sys
from importlib.abc import MetaPathFinder

BLOCKED = ("matplotlib", "controller.sandbox", "controller.ops.demo")
attempts = []

class Absent(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if any(name == b or name.startswith(b + ".") for b in BLOCKED):
            attempts.append(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Absent())
import controller.shell.daemon, controller.shell.server, controller.ops.cli
from controller.ops.cli import main

def run(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code
    return {"code": code, "out": out.getvalue(), "err": err.getvalue()}

results = {"import": list(attempts)}
results["help"] = run("--help")
results["validate"] = run("validate", sys.argv[1])
results["plan"] = run("plan", sys.argv[1], "-o", "json")
results["report"] = run("report", "zai-proxy", "-o", sys.argv[2])
results["demo"] = run("demo")
results["sandbox"] = run("sandbox")
results["loaded"] = sorted(m for m in sys.modules if m.split(".")[0] == "matplotlib"
                           or m.startswith(("controller.sandbox", "controller.ops.demo")))
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def slim(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], Path]:
    """What the slim installation answered, and where `ptc report` was asked to write."""
    tmp_path = tmp_path_factory.mktemp("slim")
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            SLIM,
            str(ROOT / "config" / "zai-proxy.yaml"),
            str(tmp_path / "r.html"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return result, tmp_path


def test_controller_and_cli_work_without_matplotlib_and_the_sandbox(
    slim: tuple[dict[str, Any], Path],
) -> None:
    r, tmp_path = slim
    assert r["import"] == []  # importing the controller does not even try
    assert r["help"]["code"] == 0 and "demo" in r["help"]["out"]
    assert r["validate"]["code"] == 0, r["validate"]
    assert r["plan"]["code"] == 0 and json.loads(r["plan"]["out"])
    assert r["loaded"] == []
    assert not (tmp_path / "r").exists()


def test_commands_that_need_an_extra_name_it_with_exit_2(
    slim: tuple[dict[str, Any], Path],
) -> None:
    r, _ = slim
    for command, extra in (("report", "report"), ("demo", "sandbox"), ("sandbox", "sandbox")):
        seen = r[command]
        assert seen["code"] == 2, (command, seen)
        err = seen["err"]
        assert f"pip install 'ptc[{extra}]'" in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err


# --- the extras against the import graph --------------------------------------------------------


def _imports(path: Path) -> set[str]:
    """Top-level names of the modules `path` imports (absolute imports only)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _distributions(names: set[str], providers: Mapping[str, list[str]]) -> set[str]:
    """The installed distributions providing these top-level modules (stdlib and ptc: none)."""
    return {
        canonicalize_name(d)
        for n in names - {"controller"}
        for d in providers.get(n, [])
        if n not in sys.stdlib_module_names
    }


def _declared(requirements: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in requirements}


@functools.cache
def _graph() -> dict[str, set[str]]:
    """Which distributions each part of the package imports: sandbox+demo, charts, the rest."""
    parts: dict[str, set[str]] = {"sandbox": set(), "report": set(), "core": set()}
    providers = metadata.packages_distributions()
    for path in (ROOT / "controller").rglob("*.py"):
        rel = path.relative_to(ROOT / "controller").as_posix()
        part = (
            "sandbox"
            if rel.startswith("sandbox/") or rel == "ops/demo.py"
            else "report"
            if rel == "ops/report/chart.py"
            else "core"
        )
        parts[part] |= _distributions(_imports(path), providers)
    return parts


def test_core_dependencies_cover_everything_but_the_extras() -> None:
    graph = _graph()
    core = _declared(PYPROJECT["dependencies"])
    assert graph["core"] <= core, (
        f"imported by the controller, not a dependency: {graph['core'] - core}"
    )
    # matplotlib is imported by the chart module only, and is not a core dependency.
    assert "matplotlib" not in graph["core"] and "matplotlib" not in core
    assert graph["report"] - core <= _declared(PYPROJECT["optional-dependencies"]["report"])


def test_the_sandbox_extra_covers_what_only_the_sandbox_and_demo_import() -> None:
    graph = _graph()
    core = _declared(PYPROJECT["dependencies"])
    sandbox = _declared(PYPROJECT["optional-dependencies"]["sandbox"])
    assert graph["sandbox"] - core <= sandbox
    # The demo writes its rollouts' reports: what the report extra brings, the sandbox's has.
    assert _declared(PYPROJECT["optional-dependencies"]["report"]) <= sandbox


NO_MATPLOTLIB = """
import asyncio, io, sys
from importlib.abc import MetaPathFinder
from pathlib import Path

class Absent(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "matplotlib":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Absent())
from controller.ops.demo import _reports, demo_rollout
from datetime import UTC, datetime
from controller.core.state import DecisionRecord, Identity, Phase, Progress, RolloutState

spec = demo_rollout(name="zai-proxy", stable={"deployment": "zai-proxy"},
                    canary={"deployment": "zai-proxy-v2", "version": "v2"}, speed=1.0)
at = datetime(2026, 12, 2, tzinfo=UTC)
state = RolloutState(Identity("t", rollout="zai-proxy"), Progress(Phase.COMPLETED, started_at=at),
                     history=(DecisionRecord(at, "pending", 0, "started", "started"),))
out = io.StringIO()
written = asyncio.run(_reports([(spec, state), (spec, state)], Path(sys.argv[1]), out))
print(repr((written, out.getvalue())))
"""


def test_the_demo_without_matplotlib_says_why_it_wrote_no_reports(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", NO_MATPLOTLIB, str(tmp_path / "reports")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    written, said = eval(proc.stdout.splitlines()[-1])  # a (None, str) repr
    assert written is None
    assert said.count("pip install 'ptc[sandbox]'") == 1, said  # said once, not per rollout
