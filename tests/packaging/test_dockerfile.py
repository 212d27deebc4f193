"""The Dockerfile and .dockerignore have the properties the issue asks for (parsed, no engine)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from controller import __version__
from tests.packaging import dockerfile as df

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
UID = 65532


@pytest.fixture(scope="module")
def stages() -> list[df.Stage]:
    return df.stages(df.parse(DOCKERFILE.read_text()))


@pytest.fixture(scope="module")
def final(stages: list[df.Stage]) -> df.Stage:
    return stages[-1]


@pytest.fixture(scope="module")
def ignore() -> df.DockerIgnore:
    return df.DockerIgnore.load(ROOT / ".dockerignore")


# --- the parser itself --------------------------------------------------------------------


def test_parser_joins_continuations_and_skips_comments() -> None:
    text = (
        "# syntax=docker/dockerfile:1.7\n"
        "FROM python:3.11.9-slim AS build\n"
        "RUN apt-get update \\\n"
        "  # a comment inside a continuation\n"
        "  && pip install x\n"
        'ENTRYPOINT ["ptc"]\n'
        "FROM scratch\n"
        "COPY --from=build --chown=1:1 /a /b\n"
    )
    got = df.stages(df.parse(text))
    assert [(s.image, s.name) for s in got] == [("python:3.11.9-slim", "build"), ("scratch", None)]
    run = got[0].all("RUN")[0]
    assert run.args == "apt-get update && pip install x" and run.line == 3
    assert got[0].all("ENTRYPOINT")[0].exec_form() == ["ptc"]
    copy = got[1].all("COPY")[0]
    assert copy.flags == {"from": "build", "chown": "1:1"} and copy.args == "/a /b"


def test_parser_honours_the_escape_directive() -> None:
    text = "# escape=`\nFROM a\nRUN one `\n  two\n"
    assert df.parse(text)[1].args == "one two"


def test_parser_refuses_an_unterminated_continuation() -> None:
    with pytest.raises(ValueError, match="continuation"):
        df.parse("FROM a\nRUN x \\\n")


# --- the Dockerfile --------------------------------------------------------------------------


def test_multi_stage_with_a_pinned_slim_final_image(stages: list[df.Stage]) -> None:
    assert len(stages) >= 2
    for stage in stages:
        image = stage.image
        assert "$" not in image, "resolve images literally, so the pin is visible"
        assert ":" in image or "@sha256:" in image, f"{image} has no tag"
        assert not image.endswith(":latest")
    final = stages[-1].image
    # python:3.11.<patch>-slim-<debian release>: a full patch version, not a moving 3.11 tag.
    assert re.fullmatch(r"python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", final), final


def test_final_stage_installs_no_build_tools(final: df.Stage) -> None:
    text = " ".join(i.args for i in final.all("RUN")).lower()
    for tool in ("gcc", "g++", "build-essential", "make ", "clang", "python3-dev", "-dev "):
        assert tool not in text, f"final stage installs {tool.strip()}"
    assert "apt-get install" not in text and "apk add" not in text


def test_runs_as_a_fixed_numeric_non_root_user(final: df.Stage) -> None:
    users = final.all("USER")
    assert users, "final stage has no USER"
    user, _, group = users[-1].args.partition(":")
    assert user.isdigit() and int(user) == UID, users[-1].args
    assert not group or (group.isdigit() and int(group) != 0)
    # Nothing after USER may need root.
    after = final.instructions[final.instructions.index(users[-1]) + 1 :]
    assert not [i for i in after if i.keyword == "RUN"]


def test_entrypoint_and_cmd(final: df.Stage) -> None:
    assert final.all("ENTRYPOINT")[-1].exec_form() == ["ptc"]
    assert final.all("CMD")[-1].exec_form() == ["run", "--config", "/etc/ptc/config.yaml"]


def test_read_only_root_filesystem_friendly(final: df.Stage) -> None:
    env: dict[str, str] = {}
    for ins in final.all("ENV"):
        for word in df.shell_words(ins.args):
            key, _, value = word.partition("=")
            env[key] = value
    assert env.get("PYTHONDONTWRITEBYTECODE") == "1"
    assert env.get("HOME") == "/tmp"
    assert not final.all("VOLUME"), "no anonymous volumes: /tmp comes from the pod"


def test_builder_builds_the_wheel_the_final_stage_installs(stages: list[df.Stage]) -> None:
    final = stages[-1]
    builders = {s.name: s for s in stages[:-1] if s.name}
    # The builder makes our wheel exactly as the tests do: pip wheel --no-deps of the project.
    (wheel_dir, builder) = _wheel_source(final, builders)
    builds = [i for i in builder.all("RUN") if "pip wheel --no-deps" in i.args]
    assert builds, "builder stage does not run `pip wheel --no-deps`"
    assert wheel_dir in builds[0].args
    # The final stage installs it from there, offline (no source tree, no index).
    installs = [i for i in final.all("RUN") if "pip install" in i.args]
    assert installs, "final stage installs nothing"
    words = df.shell_words(installs[0].args)
    assert "--no-index" in words and "ptc" in words
    assert not final.all("ADD")
    for copy in final.all("COPY"):
        assert "from" in copy.flags, f"line {copy.line}: the final stage copies from the context"


def _wheel_source(final: df.Stage, builders: dict[str | None, df.Stage]) -> tuple[str, df.Stage]:
    """Where the final stage gets wheels from: COPY --from=<stage> or RUN --mount=...from=."""
    for copy in final.all("COPY"):
        if copy.flags.get("from") in builders:
            return copy.args.split()[0], builders[copy.flags["from"]]
    for run in final.all("RUN"):
        mount = dict(
            part.split("=", 1) for part in run.flags.get("mount", "").split(",") if "=" in part
        )
        if mount.get("from") in builders and "pip install" in run.args:
            assert mount["target"] in run.args
            return mount["source"], builders[mount["from"]]
    raise AssertionError("the final stage takes nothing from a builder stage")


def test_oci_labels(final: df.Stage) -> None:
    found = df.labels(final)
    for key in ("title", "description", "version", "revision", "source", "licenses"):
        assert found.get(f"org.opencontainers.image.{key}"), f"missing OCI label {key}"
    args = {i.args.split("=")[0]: i.args.partition("=")[2] for i in final.all("ARG")}
    assert args.get("VERSION") == __version__, "default VERSION build arg != controller version"


def test_metadata(final: df.Stage) -> None:
    assert [i.args for i in final.all("EXPOSE")] == ["8080"]
    assert not final.all("HEALTHCHECK"), "Kubernetes probes, not a Docker HEALTHCHECK"


# --- .dockerignore ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".git",
        "tests/unit/test_plan.py",
        ".pytest_cache/v/cache/nodeids",
        ".mypy_cache/3.11/x.json",
        ".ruff_cache/CACHEDIR.TAG",
        ".hypothesis/examples/x",
        ".benchmarks/x.json",
        ".import_linter_cache/x",
        "ptc.egg-info/PKG-INFO",
        "build/lib/controller/ops/cli/__init__.py",
        "dist/ptc-0.1.0.whl",
        ".venv/bin/python",
        "controller/__pycache__/cli.cpython-311.pyc",
        "controller/sandbox/__pycache__/world.cpython-311.pyc",
        "helm/ptc/values.yaml",
        "bench/bench_plan.py",
        "Dockerfile",
        ".env",
    ],
)
def test_dockerignore_excludes(ignore: df.DockerIgnore, path: str) -> None:
    assert ignore.excluded(path)


def test_dockerignore_keeps_everything_the_builder_copies(
    ignore: df.DockerIgnore, stages: list[df.Stage]
) -> None:
    for source in _context_sources(stages):
        target = ROOT / source
        assert target.exists(), f"COPY source {source} does not exist"
        files = [target] if target.is_file() else [p for p in target.rglob("*") if p.is_file()]
        kept = [
            f
            for f in files
            if "__pycache__" not in f.parts and not ignore.excluded(str(f.relative_to(ROOT)))
        ]
        assert kept, f"{source} is excluded from the build context"
        if target.is_dir():
            assert not ignore.excluded(f"{source.rstrip('/')}/__init__.py")
    assert not ignore.excluded("controller/py.typed")


def test_dockerignore_matcher_semantics() -> None:
    rules = df.DockerIgnore(
        [
            (False, df._pattern_regex("*")),
            (True, df._pattern_regex("src/")),
            (False, df._pattern_regex("**/*.pyc")),
        ]
    )
    assert rules.excluded("README.md")
    assert not rules.excluded("src/a/b.py")
    assert rules.excluded("src/a/b.pyc")


def _context_sources(stages: list[df.Stage]) -> list[str]:
    """Paths the Dockerfile copies from the build context (COPY without --from)."""
    sources = []
    for stage in stages:
        for copy in stage.all("COPY"):
            if "from" not in copy.flags:
                sources.extend(copy.args.split()[:-1])
    return sources


# --- the wheel, built as the builder stage builds it -------------------------------------------


@pytest.mark.slow
def test_wheel_built_like_the_builder_contains_the_package_and_entry_point(
    tmp_path: Path, stages: list[df.Stage], ignore: df.DockerIgnore
) -> None:
    # The build context the builder sees: its COPY sources, minus .dockerignore'd files.
    context = tmp_path / "context"
    for source in _context_sources(stages):
        src = ROOT / source
        files = [src] if src.is_file() else [p for p in src.rglob("*") if p.is_file()]
        for f in files:
            rel = f.relative_to(ROOT)
            if ignore.excluded(str(rel)):
                continue
            (context / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, context / rel)
    out = tmp_path / "wheels"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(out), "."],
        cwd=context,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    wheels = list(out.glob("ptc-*.whl"))
    assert [w.name for w in wheels] == [f"ptc-{__version__}-py3-none-any.whl"]
    with zipfile.ZipFile(wheels[0]) as whl:
        names = set(whl.namelist())
        dist_info = f"ptc-{__version__}.dist-info"
        assert "controller/__init__.py" in names
        assert "controller/ops/cli/__init__.py" in names and "controller/py.typed" in names
        assert any(n.startswith("controller/sandbox/") for n in names)
        assert not any(n.startswith("tests/") or "__pycache__" in n for n in names)
        entry_points = whl.read(f"{dist_info}/entry_points.txt").decode()
        assert re.search(
            r"^\[console_scripts\]\s*\nptc = controller\.cli:main$", entry_points, re.M
        )
        metadata = whl.read(f"{dist_info}/METADATA").decode()
        assert f"\nVersion: {__version__}\n" in metadata
