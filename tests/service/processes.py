"""Helpers that start and stop real service processes in tests."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import httpx

# Seconds a started service gets to answer /readyz: it loads the backbone and
# every stored model first.
START_TIMEOUT_S = 120.0


def wait_until_ready(
    client: httpx.Client, process: subprocess.Popen, log_path: Path
) -> None:
    """Poll /readyz until it returns 200; fail when the process exits first."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = log_path.read_text()[-3000:]
            raise AssertionError(f"server exited early:\n{log}")
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"server not ready in {START_TIMEOUT_S} s")


def stop_process(process: subprocess.Popen) -> None:
    """Stop a server with SIGTERM, and kill it when it does not exit in 30 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
