"""Requests per second and latency of a real uvicorn process under load.

Starts `python -m uvicorn app.service.main:app` on a free 127.0.0.1 port with
a temporary model store. Over HTTP it creates a product, uploads good bottle
images and fits a model with the default settings. It then sends a fixed
number of scoring requests (real bottle test images, raw PNG bodies) at each
concurrency level from httpx async clients. Every request goes to the
loopback address. The server is stopped at the end, also when a step fails.

The client runs on the same machine as the server and takes CPU time from
it, so the figures are those of a single shared host.

Run: .venv/bin/python benchmarks/service_throughput.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from _common import (
    REPO_ROOT,
    add_common_arguments,
    category_test_images,
    dataset_root,
    image_files,
    machine_info,
    percentiles_ms,
    print_machine,
    print_table,
    wait_for_quiet_machine,
    write_json,
)

try:
    import psutil
except ImportError:  # pragma: no cover - depends on the environment
    raise SystemExit(
        "service_throughput.py reads the server's memory with psutil: "
        ".venv/bin/pip install psutil"
    ) from None

HOST = "127.0.0.1"
PRODUCT = "bottle"
START_TIMEOUT_S = 180.0
FIT_TIMEOUT_S = 900.0
REQUEST_TIMEOUT_S = 300.0
WARMUP_REQUESTS = 4


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_arguments(parser, "service_throughput")
    parser.add_argument(
        "--category",
        default="mvtec_ad_512/bottle",
        help="MVTec-layout category under the datasets folder (default: %(default)s)",
    )
    parser.add_argument(
        "--train-images",
        type=int,
        default=30,
        help="good training images uploaded before the fit (default: %(default)s)",
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=100,
        help="scoring requests sent at each concurrency level (default: %(default)s)",
    )
    parser.add_argument(
        "--concurrency",
        default="1,4,16",
        help="concurrent clients per level, comma-separated (default: %(default)s)",
    )
    parser.add_argument(
        "--map",
        choices=("none", "gray", "overlay"),
        default="none",
        help="anomaly map requested with each score: none (JSON scores only), "
        "gray or overlay (base64 PNG in the JSON) (default: %(default)s)",
    )
    return parser.parse_args()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def rss_mib(process: psutil.Process) -> dict[str, float]:
    """Return the server's current and peak (VmHWM) resident set size."""
    figures = {"rss": round(process.memory_info().rss / 2**20, 1)}
    try:
        for line in Path(f"/proc/{process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                figures["peak_rss"] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return figures


@contextmanager
def uvicorn_server(store: Path, log_path: Path) -> Iterator[tuple[str, int]]:
    """Run the service until the block ends; yield its base URL and pid."""
    port = free_port()
    env = {
        **os.environ,
        "STRUCTCORE_STORE_DIR": str(store),
        "STRUCTCORE_DEVICE": "cpu",
        "STRUCTCORE_LOG_LEVEL": "WARNING",
    }
    env.pop("STRUCTCORE_API_KEY", None)
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "app.service.main:app",
        "--host",
        HOST,
        "--port",
        str(port),
        "--no-access-log",
    ]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    print(f"started uvicorn pid {process.pid} on {HOST}:{port}", flush=True)
    try:
        yield f"http://{HOST}:{port}", process.pid
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        print(f"stopped uvicorn pid {process.pid}", flush=True)


def wait_ready(client: httpx.Client, pid: int, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if not psutil.pid_exists(pid):
            raise SystemExit(f"server exited early:\n{log_path.read_text()[-3000:]}")
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"server not ready after {START_TIMEOUT_S:.0f} s")


def fit_product(client: httpx.Client, train: list[Path]) -> dict:
    """Create the product, upload the good images, fit, and return the job."""
    response = client.post("/products", json={"name": PRODUCT})
    response.raise_for_status()
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in train]
    response = client.post(f"/products/{PRODUCT}/samples", files=files)
    response.raise_for_status()
    start = time.perf_counter()
    job = client.post(f"/products/{PRODUCT}/fit").json()
    deadline = time.monotonic() + FIT_TIMEOUT_S
    while job.get("state") in ("queued", "running"):
        if time.monotonic() > deadline:
            raise SystemExit(f"fit not finished after {FIT_TIMEOUT_S:.0f} s: {job}")
        time.sleep(0.5)
        job = client.get(f"/jobs/{job['id']}").json()
    if job.get("state") != "succeeded":
        raise SystemExit(f"fit failed: {job}")
    job["wall_s"] = round(time.perf_counter() - start, 1)
    return job


async def run_level(
    base_url: str, bodies: list[bytes], requests: int, concurrency: int, params
) -> dict:
    """Send `requests` scoring requests from `concurrency` clients at once."""
    latencies: list[float] = []
    errors: list[str] = []
    next_index = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency)
    url = f"/products/{PRODUCT}/score"
    headers = {"content-type": "image/png"}

    async def client_loop(client: httpx.AsyncClient) -> None:
        for index in next_index:
            body = bodies[index % len(bodies)]
            start = time.perf_counter()
            try:
                response = await client.post(
                    url, content=body, headers=headers, params=params
                )
            except httpx.HTTPError as error:
                errors.append(f"{type(error).__name__}: {error}")
                continue
            latencies.append(time.perf_counter() - start)
            if response.status_code != 200:
                errors.append(f"HTTP {response.status_code}: {response.text[:200]}")

    async with httpx.AsyncClient(
        base_url=base_url, limits=limits, timeout=REQUEST_TIMEOUT_S
    ) as client:
        start = time.perf_counter()
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
        wall = time.perf_counter() - start
    return {
        "concurrency": concurrency,
        "requests": requests,
        "wall_s": round(wall, 2),
        "requests_per_s": round(requests / wall, 2),
        "latency_ms": percentiles_ms(latencies),
        "errors": len(errors),
        "error_samples": errors[:5],
    }


def main() -> None:
    args = parse_args()
    category = dataset_root(args.datasets) / args.category
    train = image_files(category / "train" / "good")[: args.train_images]
    bodies = [path.read_bytes() for path in category_test_images(category)]
    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    params = {} if args.map == "none" else {"map": args.map}

    wait_for_quiet_machine(args.max_load, args.max_wait)
    info = machine_info()
    print_machine(info)

    with tempfile.TemporaryDirectory(prefix="structcore-throughput-") as folder:
        log_path = Path(folder) / "server.log"
        with uvicorn_server(Path(folder) / "store", log_path) as (base_url, pid):
            server = psutil.Process(pid)
            with httpx.Client(base_url=base_url, timeout=REQUEST_TIMEOUT_S) as client:
                wait_ready(client, pid, log_path)
                memory_started = rss_mib(server)
                print(f"fitting on {len(train)} images ...", flush=True)
                job = fit_product(client, train)
                print(f"fitted in {job['wall_s']} s", flush=True)
                for body in bodies[:WARMUP_REQUESTS]:
                    client.post(
                        f"/products/{PRODUCT}/score",
                        content=body,
                        headers={"content-type": "image/png"},
                        params=params,
                    ).raise_for_status()
            memory_before = rss_mib(server)
            results = []
            for level in levels:
                print(f"{args.requests} requests, {level} clients ...", flush=True)
                result = asyncio.run(
                    run_level(base_url, bodies, args.requests, level, params)
                )
                result["server_memory_mib_after"] = rss_mib(server)
                results.append(result)
            memory_after = rss_mib(server)

    print()
    print_table(
        ["clients", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "errors"],
        [
            [
                r["concurrency"],
                r["requests"],
                r["requests_per_s"],
                r["latency_ms"]["p50"],
                r["latency_ms"]["p95"],
                r["latency_ms"]["p99"],
                r["errors"],
            ]
            for r in results
        ],
    )
    print(
        f"\nserver RSS MiB: {memory_started['rss']} after start-up, "
        f"{memory_before['rss']} after the fit and warm-up, "
        f"{memory_after['rss']} after the load "
        f"(peak {memory_after.get('peak_rss', 'n/a')})"
    )
    total_errors = sum(r["errors"] for r in results)
    print(f"errors: {total_errors} (must be 0)")
    for r in results:
        for sample in r["error_samples"]:
            print(f"  {r['concurrency']} clients: {sample}")

    write_json(
        args.output,
        {
            "benchmark": "service_throughput",
            "machine": info,
            "category": args.category,
            "train_images": len(train),
            "map": args.map,
            "fit_job": {k: job.get(k) for k in ("id", "state", "wall_s")},
            "server_memory_mib": {
                "after_start": memory_started,
                "before_load": memory_before,
                "after_load": memory_after,
            },
            "levels": results,
            "errors": total_errors,
            "load_average_end": [round(v, 2) for v in os.getloadavg()],
        },
    )
    if total_errors:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
