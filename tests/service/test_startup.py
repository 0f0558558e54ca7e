"""Tests of `structcore-serve` startup failures, with real processes on loopback."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import torch

from app.service.store import ModelStore, StoreInUseError
from tests.service.conftest import free_port
from tests.service.processes import stop_process, wait_until_ready

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVE = [sys.executable, "-c", "from app.service.main import run; run()"]
EXIT_TIMEOUT_S = 120.0


def serve_env(store_dir: Path, port: int, **variables: str) -> dict[str, str]:
    """Return the environment of a server, without the caller's STRUCTCORE_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STRUCTCORE_")}
    env.update(
        STRUCTCORE_STORE_DIR=str(store_dir),
        STRUCTCORE_HOST="127.0.0.1",
        STRUCTCORE_PORT=str(port),
        STRUCTCORE_DEVICE="cpu",
    )
    env.update(variables)
    return env


def serve_until_exit(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        SERVE,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=EXIT_TIMEOUT_S,
    )


def message_lines(stderr: str) -> list[str]:
    return [
        line for line in stderr.splitlines() if line.startswith("structcore-serve:")
    ]


@contextmanager
def running_server(store_dir: Path, log_path: Path) -> Iterator[subprocess.Popen]:
    """Run structcore-serve until it is ready, and stop it after the block."""
    port = free_port()
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            SERVE,
            cwd=REPO_ROOT,
            env=serve_env(store_dir, port),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as client:
            wait_until_ready(client, process, log_path)
        yield process
    finally:
        stop_process(process)


def test_invalid_variables_exit_2(tmp_path: Path) -> None:
    env = serve_env(
        tmp_path / "store",
        8000,
        STRUCTCORE_PORT="abc",
        STRUCTCORE_LOG_LEVEL="loud",
    )
    result = serve_until_exit(env)

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = message_lines(result.stderr)
    assert len(lines) == 2, result.stderr
    assert lines[0].startswith("structcore-serve: STRUCTCORE_PORT='abc' is invalid")
    assert "unset it to use the default 8000" in lines[0]
    assert lines[1].startswith("structcore-serve: STRUCTCORE_LOG_LEVEL='loud'")
    assert "DEBUG, INFO, WARNING, ERROR, CRITICAL" in lines[1]
    assert not (tmp_path / "store").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_gpu_exits_2(tmp_path: Path) -> None:
    env = serve_env(tmp_path / "store", free_port(), STRUCTCORE_DEVICE="cuda")
    result = serve_until_exit(env)

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = message_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert "STRUCTCORE_DEVICE=cuda" in lines[0]
    assert "set STRUCTCORE_DEVICE=cpu or auto" in lines[0]


def test_busy_port_leaves_store_alone(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    leftover = store_dir / "bottle" / "models" / ".tmp-fit-in-progress"
    leftover.mkdir(parents=True)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = serve_until_exit(serve_env(store_dir, port))

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = message_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in lines[0]
    assert leftover.is_dir()
    assert not (store_dir / ".lock").exists()


def test_second_server_on_store_exits_1(tmp_path: Path) -> None:
    store_dir = tmp_path / "store"
    log_path = tmp_path / "first.log"
    with running_server(store_dir, log_path) as first:
        # A fit of the first server writes its version into such a folder.
        leftover = store_dir / ".tmp-fit-in-progress"
        leftover.mkdir()
        result = serve_until_exit(serve_env(store_dir, free_port()))
        first_running = first.poll() is None

    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = message_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    expected = (
        f"store {store_dir.resolve()} is in use by another structcore process "
        f"(pid {first.pid}); stop it or use another STRUCTCORE_STORE_DIR"
    )
    assert lines[0] == f"structcore-serve: {expected}"
    assert leftover.is_dir()
    assert first_running
    # uvicorn exits by re-raising SIGTERM after a clean shutdown.
    assert "shutting down: stopping fit jobs" in log_path.read_text()


def test_store_lock_shared_in_process(tmp_path: Path) -> None:
    first = ModelStore(tmp_path / "store")
    second = ModelStore(tmp_path / "store")
    first.lock()
    first.lock()
    second.lock()
    first.unlock()
    probe = [
        sys.executable,
        "-c",
        "import sys; from pathlib import Path; "
        "from app.service.store import ModelStore, StoreInUseError\n"
        "try:\n    ModelStore(Path(sys.argv[1])).lock()\n"
        "except StoreInUseError:\n    sys.exit(3)",
        str(tmp_path / "store"),
    ]
    while_held = subprocess.run(probe, cwd=REPO_ROOT, timeout=EXIT_TIMEOUT_S)
    second.unlock()
    after_unlock = subprocess.run(probe, cwd=REPO_ROOT, timeout=EXIT_TIMEOUT_S)

    assert while_held.returncode == 3
    assert after_unlock.returncode == 0
    assert StoreInUseError.reason == "store_in_use"
