"""The CLI under hostile conditions: a silent API server, a closed pipe, a crash, a bad file."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.ops import cli

MINIMAL = (Path(__file__).parents[2] / "config" / "minimal.yaml").read_text()


@pytest.fixture
def silent_api(tmp_path: Path) -> Iterator[Path]:
    """A kubeconfig whose API server accepts TCP connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.2)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    port = server.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\n"
        f'clusters: [{{name: c, cluster: {{server: "http://127.0.0.1:{port}"}}}}]\n'
        "users: [{name: u, user: {token: t}}]\n"
        "contexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"
    )
    try:
        yield kubeconfig
    finally:
        stop.set()
        thread.join(timeout=5)
        for conn in held:
            conn.close()
        server.close()


def ptc(*args: str, timeout: float = 60) -> tuple[int, str, str, float]:
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "controller.ops.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started


@pytest.mark.parametrize(
    "command",
    [
        ["status", "--timeout", "2"],
        ["promote", "web", "--timeout", "2"],
        ["abort", "web", "--timeout", "2"],
    ],
    ids=["status", "promote", "abort"],
)
def test_timeout_covers_connecting_to_a_silent_api_server(
    command: list[str], silent_api: Path
) -> None:
    code, _, err, seconds = ptc(*command, "--kubeconfig", str(silent_api))
    assert code == 1
    assert err.strip().endswith("check the kubeconfig's server and that the API server answers")
    assert "no answer within --timeout 2s" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    # 2 s plus the interpreter's start; it took 54 s before --timeout covered connecting.
    assert seconds < 20


def test_run_with_a_bad_file_exits_2_and_connects_to_nothing(
    tmp_path: Path, silent_api: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(MINIMAL.replace("weight: 20", "weight: true"))
    code, _, err, _ = ptc("run", "--config", str(bad), "--kubeconfig", str(silent_api))
    assert code == 2
    assert f"{bad}:9: rollout 'web': steps[0].weight: input should be a valid number" in err
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    code, _, err, _ = ptc("run", "--config", str(empty), "--kubeconfig", str(silent_api))
    assert code == 2 and "the file is empty: no rollouts" in err


def test_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    many = "rollouts:\n" + "".join(
        MINIMAL.split("rollouts:\n", 1)[1]
        .replace(": web", f": web{i}")
        .replace("web-v2", f"w{i}-v2")
        for i in range(400)
    )
    config = tmp_path / "many.yaml"
    config.write_text(many)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controller.ops.cli",
            "plan",
            str(config),
            "--replicas",
            "4",
            "-o",
            "json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(1) == b"["
    proc.stdout.close()  # what `| head -c 1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == cli.EXIT_BROKEN_PIPE
    assert err == ""


def test_an_unforeseen_error_is_one_line_and_a_traceback_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from controller.ops.cli import config_cmds

    def boom(_args: object) -> int:
        raise RuntimeError("something nobody foresaw\non two lines")

    monkeypatch.setattr(config_cmds, "cmd_schema", boom)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)
    assert cli.main(["schema"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith(
        "ptc schema: internal error: RuntimeError: something nobody foresaw on two lines "
        f"(traceback in {tmp_path}/ptc-crash-"
    )
    (log,) = tmp_path.glob("ptc-crash-*.log")
    assert "Traceback (most recent call last)" in log.read_text()
    assert "something nobody foresaw" in log.read_text()


@pytest.mark.parametrize("replicas", ["0", "10001", "3000000000"])
def test_replicas_flag_is_bounded(replicas: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plan", "config/minimal.yaml", "--replicas", replicas]) == 2
    assert "--replicas must be between 1 and 10000" in capsys.readouterr().err
