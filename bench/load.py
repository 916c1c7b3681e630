"""The seed's 100-QPS hybrid load (60% vector, 30% filtered, 10% hybrid) with locust.

``python -m akidb.bench.load [--vectors 100000 --dim 512 --qps 100 --duration 60]
[--workers N] [--target URL --api-key KEY]``

Starts a server (or uses ``--target``), loads documents with payloads and text,
then runs locust headless (``bench/locustfile.py``): open-loop pacing at the
target rate, latency from the intended send time. ``--workers N`` runs locust's
distributed mode with N local worker processes (``--master-port`` lets remote
workers join: ``locust -f bench/locustfile.py --worker --master-host HOST``).
Prints QPS, error rate and P50/P95/P99 overall and per operation; saves raw
samples (for the regression gate) and a latency plot. ``--find-max 200,300,500``
then runs the same mix at each rate for ``--step-duration`` seconds, stopping at the
first that misses P99 < 50 ms with 0 errors, and reports the highest that held,
with the load generator's own CPU (a saturated generator is flagged: its figure is
then the generator's limit, not the server's).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from akidb.bench import common
from akidb.bench.results import markdown_table, publish, record
from akidb.bench.samples import Samples
from akidb.bench.target import add_target_options, open_target
from akidb.datagen import vectors
from akidb.datagen.documents import iter_documents

LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"
COLLECTION = "bench/db/load"


def load_data(client: Any, n: int, dim: int, batch: int = 1000, seed: int = 0,
              collection: str = COLLECTION) -> float:
    """Documents with vectors, text and payloads; returns seconds taken."""
    client.create_collection(collection, dimension=dim, create_parents=True)
    base = vectors.clustered(n, dim, seed=seed)
    docs = iter_documents(n, seed=seed)
    started = time.perf_counter()
    for s in range(0, n, batch):
        chunk = [next(docs) for _ in range(min(batch, n - s))]
        client.upsert_arrays(collection, [d["id"] for d in chunk], base[s:s + len(chunk)],
                             [d["payload"] for d in chunk], [d["text"] for d in chunk])
    return time.perf_counter() - started


def run_locust(url: str, key: str | None, *, qps: float, users: int, duration: float,
               dim: int, workers: int = 0, master_port: int = 5557, seed: int = 0,
               log: Path | None = None, collection: str = COLLECTION
               ) -> list[tuple[str, float, float, bool]]:
    """Run locust headless against ``url``; returns every sample (kind, t, ms, ok)."""
    samples_dir = Path(tempfile.mkdtemp(prefix="akidb-load-"))
    env = {**os.environ, "AKIDB_LOAD_URL": url, "AKIDB_LOAD_KEY": key or "",
           "AKIDB_LOAD_COLLECTION": collection, "AKIDB_LOAD_QPS": str(qps),
           "AKIDB_LOAD_USERS": str(users), "AKIDB_LOAD_DIM": str(dim),
           "AKIDB_LOAD_SEED": str(seed), "AKIDB_LOAD_SAMPLES_DIR": str(samples_dir)}
    base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE)]
    main_cmd = [*base, "--headless", "-u", str(users), "-r", str(max(users, 1)),
                "-t", f"{int(duration)}s", "--only-summary", "--stop-timeout", "10",
                "--loglevel", "WARNING"]
    out = open(log, "ab") if log else subprocess.DEVNULL
    procs: list[subprocess.Popen[bytes]] = []
    try:
        if workers:
            main_cmd += ["--master", "--expect-workers", str(workers),
                         "--master-bind-port", str(master_port)]
        master = subprocess.Popen(main_cmd, env=env, stdout=out, stderr=out)
        procs.append(master)
        for _ in range(workers):
            procs.append(subprocess.Popen(
                [*base, "--worker", "--master-host", "127.0.0.1", "--master-port",
                 str(master_port), "--loglevel", "WARNING"], env=env, stdout=out, stderr=out))
        master.wait(timeout=duration + 120)
        for p in procs[1:]:
            p.wait(timeout=30)
        samples: list[tuple[str, float, float, bool]] = []
        for f in samples_dir.glob("samples-*.json"):
            samples.extend(tuple(s) for s in json.loads(f.read_text()))
        return samples
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if log:
            out.close()  # type: ignore[union-attr]
        shutil.rmtree(samples_dir, ignore_errors=True)


def children_cpu_s() -> float:
    """CPU seconds of every finished child process so far (locust and its workers)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def find_max(url: str, key: str | None, rates: list[int], *, step_s: float, warmup_s: float,
             users: int, dim: int, workers: int, master_port: int, seed: int, log: Path,
             collection: str) -> list[dict[str, Any]]:
    """The mix at each rate in turn until one misses P99 < 50 ms with 0 errors."""
    steps = []
    for rate in rates:
        step_users = max(users, rate // 2)  # each sender at most every 2 s / rate apart
        print(f"  .. {rate} QPS for {step_s:g}s ({step_users} users)", file=sys.stderr)
        cpu0, t0 = children_cpu_s(), time.perf_counter()
        samples = run_locust(url, key, qps=rate, users=step_users, duration=step_s + warmup_s,
                             dim=dim, workers=workers, master_port=master_port, seed=seed,
                             log=log, collection=collection)
        generator_cores = (children_cpu_s() - cpu0) / (time.perf_counter() - t0)
        s = summarize(samples, warmup_s)
        held = s["all"]["p99"] < 50 and s["errors"] == 0
        steps.append({"qps": rate, "offered_qps": s["offered_qps"], "errors": s["errors"],
                      "p50": s["all"]["p50"], "p95": s["all"]["p95"], "p99": s["all"]["p99"],
                      "held": held, "generator_cores": generator_cores,
                      "generator_saturated": generator_cores > 0.9 * max(1, workers)})
        if not held:
            break
    return steps


def summarize(samples: list[tuple[str, float, float, bool]], warmup_s: float
              ) -> dict[str, Any]:
    if not samples:
        raise RuntimeError("locust recorded no requests (see the log)")
    t0 = min(s[1] for s in samples) + warmup_s
    kept = [s for s in samples if s[1] >= t0]
    span = max(s[1] for s in kept) - min(s[1] for s in kept) if len(kept) > 1 else 1.0
    out: dict[str, Any] = {"requests": len(kept), "offered_qps": len(kept) / max(span, 1e-9),
                           "errors": sum(not s[3] for s in kept)}
    for kind in ("all", "vector", "filtered", "hybrid"):
        ms = Samples.of(s[2] for s in kept if kind == "all" or s[0] == kind)
        if len(ms):
            summary = ms.summary()
            out[kind] = {"n": len(ms), **{k: summary[k] for k in ("p50", "p95", "p99", "max")}}
    return out


def _plot(samples: list[tuple[str, float, float, bool]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    qs = np.linspace(0, 99.9, 400)
    fig, ax = plt.subplots(figsize=(7, 4))
    for kind in ("vector", "filtered", "hybrid"):
        ms = np.asarray([s[2] for s in samples if s[0] == kind])
        if len(ms):
            ax.plot(qs, np.percentile(ms, qs), label=kind)
    ax.set_yscale("log")
    ax.set_xlabel("percentile")
    ax.set_ylabel("latency from intended send (ms)")
    ax.set_title(title)
    ax.axhline(25, ls="--", c="gray", lw=0.8)
    ax.axhline(50, ls=":", c="gray", lw=0.8)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__, vectors=100_000, dim=512, seed=0, out="reports/load")
    ap.add_argument("--qps", type=float, default=100.0)
    ap.add_argument("--users", type=int, default=50, help="paced senders (open loop)")
    ap.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    ap.add_argument("--warmup", type=float, default=5.0, help="seconds not counted")
    ap.add_argument("--workers", type=int, default=0, help="locust worker processes")
    ap.add_argument("--master-port", type=int, default=5557)
    ap.add_argument("--find-max", type=common.count_list, default=None, metavar="RATES",
                    help="then the mix at each of these rates (e.g. 200,300,400,500): the "
                         "highest with P99 < 50 ms and 0 errors")
    ap.add_argument("--step-duration", type=common.positive_float, default=20.0,
                    help="seconds of load per --find-max rate")
    add_target_options(ap)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with open_target(args, fsync="batch") as target, target.scratch_tenants("load") as name:
        collection = f"{name()}/db/load"
        with target.client(timeout=600) as client:
            print(f"loading {args.vectors} x {args.dim} documents ...", file=sys.stderr)
            load_s = load_data(client, args.vectors, args.dim, seed=args.seed,
                               collection=collection)
        print(f"running {args.qps:g} QPS for {args.duration:g}s with {args.users} users"
              f"{f' on {args.workers} workers' if args.workers else ''} ...", file=sys.stderr)
        samples = run_locust(target.rest_url, target.api_key, qps=args.qps, users=args.users,
                             duration=args.duration + args.warmup, dim=args.dim,
                             workers=args.workers, master_port=args.master_port,
                             seed=args.seed, log=args.out / "locust.log",
                             collection=collection)
        steps = find_max(target.rest_url, target.api_key, args.find_max,
                         step_s=args.step_duration, warmup_s=args.warmup, users=args.users,
                         dim=args.dim, workers=args.workers, master_port=args.master_port,
                         seed=args.seed, log=args.out / "locust.log",
                         collection=collection) if args.find_max else []
    s = summarize(samples, args.warmup)
    _plot(samples, args.out / "latency.png",
          f"{args.qps:g} QPS hybrid mix, {args.vectors} x {args.dim}")
    rows = [[kind, str(s[kind]["n"]), f"{s[kind]['p50']:.2f}", f"{s[kind]['p95']:.2f}",
             f"{s[kind]['p99']:.2f}", f"{s[kind]['max']:.1f}"]
            for kind in ("all", "vector", "filtered", "hybrid") if kind in s]
    ok = s["all"]["p95"] < 25 and s["all"]["p99"] < 50 and s["errors"] == 0
    spread = f", {args.workers} workers" if args.workers else ""
    if args.http_server and not args.target:
        spread += f", {args.http_server} front"
    if args.server_threads and not args.target:
        spread += f", {args.server_threads} server threads"
    lines = [f"# Load: {args.qps:g} QPS hybrid mix on {args.vectors} x {args.dim} "
             f"(open loop, {args.users} users{spread})",
             "", f"Offered {s['offered_qps']:.1f} QPS over {args.duration:g}s after a "
             f"{args.warmup:g}s warm-up; {s['requests']} requests, {s['errors']} errors "
             f"({s['errors'] / s['requests']:.2%}). Loaded in {load_s:.1f}s.", "",
             *markdown_table(["operation", "n", "P50 ms", "P95 ms", "P99 ms", "max ms"], rows),
             "", f"Target P95 < 25 ms, P99 < 50 ms, 0 errors: {'met' if ok else 'missed'}.",
             "", "![latency percentiles](latency.png)"]
    if steps:
        held = [x["qps"] for x in steps if x["held"]]
        lines += ["", "## Highest rate with P99 < 50 ms and 0 errors", "",
                  *markdown_table(
                      ["target QPS", "offered QPS", "P50 ms", "P95 ms", "P99 ms", "errors",
                       "generator cores", "held"],
                      [[str(x["qps"]), f"{x['offered_qps']:.0f}", f"{x['p50']:.2f}",
                        f"{x['p95']:.2f}", f"{x['p99']:.2f}", str(x["errors"]),
                        f"{x['generator_cores']:.2f}"
                        + (" SATURATED" if x["generator_saturated"] else ""),
                        "yes" if x["held"] else "no"] for x in steps]),
                  "", (f"Highest held: {max(held)} QPS" if held else
                       "Highest held: none (the lowest rate tried, "
                       f"{min(x['qps'] for x in steps)} QPS, missed)")
                  + ("" if steps[-1]["held"] is False else " (every rate tried held)") + "."]
        s["find_max"] = {"steps": steps, "highest_held_qps": max(held) if held else None}
    t0 = min(x[1] for x in samples) + args.warmup
    metrics = {"load_latency_ms": Samples.of(x[2] for x in samples if x[1] >= t0).metric()}
    publish(args.out, record("load", args, {"results": s, "metrics": metrics}), lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
