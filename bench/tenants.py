"""Multi-tenant isolation and quota enforcement under load.

Tenants with Zipf-skewed sizes each get a developer key, a collection and a
request-rate quota. Quiet tenants send a paced search load (open loop: latency
from the intended send time) twice in one run: alone, then while one noisy
tenant floods the server from separate processes far beyond its quota. The
figures:
- isolation of latency: the quiet tenants' P50/P95/P99 with the noisy neighbour
  ÷ alone, and their error count (should be 0);
- rate quota: the noisy tenant's accepted requests/s ÷ its quota (≈ 1 when the
  token bucket holds), and how many of its calls got 429;
- vector quota: an upsert past the noisy tenant's ``max_vectors`` is refused
  whole (429) and its count is unchanged;
- isolation of data: every quiet search returns only its own tenant's documents,
  and each tenant's key is refused (403) on another tenant's collection.

Run: ``python -m akidb.bench.tenants [--tenants 10 --documents 20000] [--duration 20]
[--quiet-qps 5 --noisy-quota 50 --noisy-procs 2] [--target URL --api-key KEY]``.
"""

from __future__ import annotations

import multiprocessing
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from akidb.bench import common
from akidb.bench.results import markdown_table, publish, record
from akidb.bench.samples import Samples
from akidb.bench.target import Target, add_target_options, open_target
from akidb.datagen import vectors
from akidb.datagen.tenants import zipf_sizes
from akidb.server.client import Client
from akidb.server.errors import PermissionDenied, QuotaExceeded

DIM = 64


def burst(rate: float) -> int:
    """The token bucket's size: one second's worth, as the server's default."""
    return max(1, int(np.ceil(rate)))


def setup(admin: Client, name: Callable[[str], str], sizes: list[int], quiet_quota: float,
          noisy_quota: float, seed: int) -> list[dict[str, Any]]:
    """One tenant per size: a developer key and a collection of that many documents.

    Tenant 0 is the noisy one: its quotas are a request rate and room for its
    documents only."""
    made = []
    for rank, size in enumerate(sizes):
        tenant = name(f"-{rank:02d}")
        quotas = ({"requests_per_second": noisy_quota, "burst": burst(noisy_quota),
                   "max_vectors": size} if rank == 0
                  else {"requests_per_second": quiet_quota})
        admin.create_tenant(tenant, quotas)
        admin.create_database(tenant, "db")
        key = admin.create_user(tenant, "dev", "developer")["api_key"]
        collection = f"{tenant}/db/docs"
        admin.create_collection(collection, dimension=DIM)
        base = vectors.clustered(size, DIM, seed=seed + rank)
        for s in range(0, size, 1000):
            n = min(1000, size - s)
            admin.upsert_arrays(collection, [f"{tenant}:{i}" for i in range(s, s + n)],
                                base[s:s + n], [{"tenant": tenant}] * n)
        made.append({"name": tenant, "key": key, "collection": collection, "size": size})
        print(f"  .. tenant {rank + 1}/{len(sizes)}: {size} documents", file=sys.stderr,
              flush=True)
    return made


def paced_searches(url: str, tenant: dict[str, Any], qps: float, duration: float,
                   seed: int, out: list[tuple[float, bool, bool]]) -> None:
    """Open loop at ``qps``: (ms from intended send, ok, only own documents) per call."""
    rng = np.random.default_rng(seed)
    queries = rng.standard_normal((max(1, int(qps * duration) + 1), DIM)).astype(np.float32)
    own = tenant["name"] + ":"
    with Client(url, tenant["key"], timeout=30, retries=0) as client:
        start = time.perf_counter()
        for i, q in enumerate(queries):
            intended = start + i / qps
            delay = intended - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            try:
                hits = client.search(tenant["collection"], q, k=10).hits
                ok, isolated = True, all(h.id.startswith(own) for h in hits)
            except Exception:  # noqa: BLE001 - every failure counts as an error
                ok, isolated = False, True
            out.append(((time.perf_counter() - intended) * 1000, ok, isolated))


def flood(url: str, key: str, collection: str, duration: float, seed: int) -> dict[str, int]:
    """Closed loop as fast as one connection goes (runs in its own process)."""
    q = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    counts = {"ok": 0, "quota": 0, "other": 0}
    with Client(url, key, timeout=30, retries=0) as client:
        end = time.perf_counter() + duration
        while time.perf_counter() < end:
            try:
                client.search(collection, q, k=10)
                counts["ok"] += 1
            except QuotaExceeded:
                counts["quota"] += 1
            except Exception:  # noqa: BLE001
                counts["other"] += 1
    return counts


def quiet_phase(url: str, quiet: list[dict[str, Any]], qps: float, duration: float,
                seed: int) -> list[tuple[float, bool, bool]]:
    samples: list[tuple[float, bool, bool]] = []
    threads = [threading.Thread(target=paced_searches,
                                args=(url, t, qps, duration, seed + i, samples))
               for i, t in enumerate(quiet)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return samples


def noisy_phase(url: str, noisy: dict[str, Any], quiet: list[dict[str, Any]], qps: float,
                duration: float, procs: int, seed: int
                ) -> tuple[list[tuple[float, bool, bool]], dict[str, int]]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(procs) as pool:
        pending = [pool.apply_async(flood, (url, noisy["key"], noisy["collection"],
                                            duration, seed + p)) for p in range(procs)]
        time.sleep(1.0)  # the spawned processes import and connect first
        samples = quiet_phase(url, quiet, qps, duration - 2.0, seed + 100)
        counts = [p.get(timeout=duration + 60) for p in pending]
    return samples, {k: sum(c[k] for c in counts) for k in counts[0]}


def _past_rate_limit(fn: Callable[[], Any]) -> Any:
    """Call ``fn``, waiting out the tenant's request-rate 429s (its bucket may still be
    empty after the flood); any other error, the vector quota's included, propagates."""
    for _ in range(100):
        try:
            return fn()
        except QuotaExceeded as exc:
            if "request rate" not in str(exc):
                raise
            time.sleep(0.1)
    raise RuntimeError("still over the request rate after 10 s")


def quota_and_access_checks(target: Target, tenants: list[dict[str, Any]]) -> dict[str, Any]:
    noisy = tenants[0]
    with target.client(noisy["key"], retries=0) as client:
        def count() -> int:
            return _past_rate_limit(lambda: client.get_collection(noisy["collection"]))["count"]

        before = count()
        try:
            _past_rate_limit(lambda: client.upsert_arrays(
                noisy["collection"], [f"over-{i}" for i in range(10)],
                np.ones((10, DIM), dtype=np.float32)))
            refused = False
        except QuotaExceeded:
            refused = True
        after = count()
    cross_refused = cross_tried = 0
    for i, t in enumerate(tenants):
        other = tenants[(i + 1) % len(tenants)]
        with target.client(t["key"], retries=0) as client:
            cross_tried += 1
            try:
                _past_rate_limit(lambda c=client, o=other: c.search(
                    o["collection"], np.ones(DIM, dtype=np.float32), k=1))
            except PermissionDenied:
                cross_refused += 1
    return {"vector_quota_refused": refused, "count_before": before, "count_after": after,
            "cross_tenant_tried": cross_tried, "cross_tenant_refused": cross_refused}


def _stats(samples: list[tuple[float, bool, bool]]) -> dict[str, float]:
    ms = Samples.of(s[0] for s in samples if s[1])
    return {"n": len(samples), "errors": sum(not s[1] for s in samples),
            "leaks": sum(not s[2] for s in samples),
            **{f"p{q}": ms.percentile(q) for q in (50, 95, 99)}}


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__, seed=0, out="reports/tenants")
    ap.add_argument("--tenants", type=int, default=10)
    ap.add_argument("--documents", type=int, default=20_000, help="over all tenants (Zipf)")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    ap.add_argument("--quiet-qps", type=float, default=5.0, help="per quiet tenant")
    ap.add_argument("--quiet-quota", type=float, default=100.0, help="requests/s per quiet tenant")
    ap.add_argument("--noisy-quota", type=float, default=50.0, help="the noisy tenant's requests/s")
    ap.add_argument("--noisy-procs", type=int, default=2, help="flooding processes")
    add_target_options(ap)
    args = ap.parse_args(argv)
    if args.tenants < 2 or args.documents < args.tenants or args.duration < 5:
        ap.error("need --tenants >= 2, --documents >= --tenants and --duration >= 5")
    with open_target(args, fsync="batch") as target, target.scratch_tenants("mt") as name:
        with target.client(timeout=120) as admin:
            tenants = setup(admin, name, zipf_sizes(args.tenants, args.documents),
                            args.quiet_quota, args.noisy_quota, args.seed)
        noisy, quiet = tenants[0], tenants[1:]
        print(f"phase 1: {len(quiet)} quiet tenants at {args.quiet_qps:g} QPS each, alone",
              file=sys.stderr, flush=True)
        alone = quiet_phase(target.rest_url, quiet, args.quiet_qps, args.duration, args.seed)
        print(f"phase 2: the same, while {args.noisy_procs} processes flood the noisy tenant "
              f"(quota {args.noisy_quota:g}/s)", file=sys.stderr, flush=True)
        loud, flood_counts = noisy_phase(target.rest_url, noisy, quiet, args.quiet_qps,
                                         args.duration, args.noisy_procs, args.seed)
        checks = quota_and_access_checks(target, tenants)
    a, b = _stats(alone), _stats(loud)
    # The bucket starts full: a burst's worth is accepted on top of the rate.
    accepted = max(0, flood_counts["ok"] - burst(args.noisy_quota)) / args.duration
    ratio = {q: b[q] / a[q] for q in ("p50", "p95", "p99")}
    results = {"alone": a, "with_noisy": b, "ratio": ratio, "flood": flood_counts,
               "noisy_accepted_per_s": accepted,
               "noisy_quota_ratio": accepted / args.noisy_quota, **checks}
    ok = (b["errors"] == 0 and a["leaks"] == b["leaks"] == 0 and checks["vector_quota_refused"]
          and checks["count_before"] == checks["count_after"]
          and checks["cross_tenant_refused"] == checks["cross_tenant_tried"])
    rows = [[label, str(s["n"]), str(s["errors"]), str(s["leaks"]), f"{s['p50']:.2f}",
             f"{s['p95']:.2f}", f"{s['p99']:.2f}"]
            for label, s in (("alone", a), ("with noisy neighbour", b))]
    lines = [f"# Multi-tenant isolation and quotas ({args.tenants} tenants, "
             f"{args.documents} documents, Zipf sizes)", "",
             f"{len(quiet)} quiet tenants at {args.quiet_qps:g} QPS each (open loop), "
             f"{args.duration:g}s per phase; the noisy tenant floods from {args.noisy_procs} "
             f"processes with a {args.noisy_quota:g} requests/s quota.", "",
             *markdown_table(["quiet tenants", "calls", "errors", "foreign results",
                              "P50 ms", "P95 ms", "P99 ms"], rows), "",
             f"- latency with the noisy neighbour ÷ alone: P50 {ratio['p50']:.2f}x, "
             f"P95 {ratio['p95']:.2f}x, P99 {ratio['p99']:.2f}x",
             f"- noisy tenant: {flood_counts['ok']} accepted, {flood_counts['quota']} refused "
             f"with 429, {flood_counts['other']} other errors; beyond the initial burst "
             f"{accepted:.1f}/s accepted = "
             f"{results['noisy_quota_ratio']:.2f}x its quota",
             f"- vector quota: upsert past max_vectors "
             f"{'refused (429)' if checks['vector_quota_refused'] else 'NOT refused'}, count "
             f"{checks['count_before']} -> {checks['count_after']}",
             f"- cross-tenant access refused {checks['cross_tenant_refused']}/"
             f"{checks['cross_tenant_tried']}",
             "", f"Isolation and quotas held: {'yes' if ok else 'NO'}."]
    metrics = {"tenants_quiet_latency_ms": Samples.of(s[0] for s in loud if s[1]).metric()}
    publish(args.out, record("tenants", args, {"results": results, "metrics": metrics}), lines)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
