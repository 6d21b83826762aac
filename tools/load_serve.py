"""Load a running ``vtk serve`` on the loopback address: N requests at each concurrency, and the
throughput, p50 / p99 latency, errors and the server's resident memory before and after.

    vtk serve runs/.../last.ckpt --port 8000 --max_batch_size 8 --batch_timeout 0.01 &
    python tools/load_serve.py --url http://127.0.0.1:8000 --images IMAGES --requests 2000 \
        --concurrency 1 8 32 --server_pid $!

Requests cycle through the images of ``--images`` (raw bodies, their own content type).
``--server_pid``: the ``vtk serve`` process; its resident memory (with its children: the
inference workers) is read from /proc before and after each concurrency, to show whether it
stays flat. Loopback only: the tool refuses another host.
"""

from __future__ import annotations

import argparse
import statistics
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants, in MiB (Linux /proc)."""
    total, todo = 0, [pid]
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
        except (OSError, ValueError, IndexError):
            continue
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024


def run(url: str, bodies: list[tuple[bytes, str]], requests: int, concurrency: int) -> dict:
    def one(i: int) -> tuple[float, bool]:
        body, kind = bodies[i % len(bodies)]
        request = urllib.request.Request(url + "/predict", data=body, method="POST",
                                         headers={"Content-Type": kind})  # fmt: skip
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=120) as r:
                ok = r.status == 200 and bool(r.read())
        except (urllib.error.URLError, OSError):
            ok = False
        return time.perf_counter() - start, ok

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(requests)))
    wall = time.perf_counter() - start
    latencies = sorted(t for t, _ in results)
    return {
        "requests": requests, "concurrency": concurrency, "wall_s": wall,
        "throughput": requests / wall, "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "errors": sum(not ok for _, ok in results),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--server_pid", type=int)
    args = parser.parse_args()
    if urlparse(args.url).hostname not in ("127.0.0.1", "localhost", "::1"):
        raise SystemExit("load_serve: loopback only (--url http://127.0.0.1:PORT)")
    bodies = [(p.read_bytes(), TYPES[p.suffix.lower()]) for p in sorted(args.images.rglob("*"))
              if p.suffix.lower() in TYPES][:64]  # fmt: skip
    if not bodies:
        raise SystemExit(f"load_serve: no .jpg / .png images in {args.images}")
    print(
        "concurrency  requests  throughput/s  p50 ms  p99 ms  errors  server RSS MiB (before -> after)"
    )
    for c in args.concurrency:
        before = rss_mib(args.server_pid) if args.server_pid else float("nan")
        r = run(args.url, bodies, args.requests, c)
        after = rss_mib(args.server_pid) if args.server_pid else float("nan")
        print(f"{c:>11}  {r['requests']:>8}  {r['throughput']:>12.1f}  {r['p50_ms']:>6.0f}  "
              f"{r['p99_ms']:>6.0f}  {r['errors']:>6}  {before:.0f} -> {after:.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
