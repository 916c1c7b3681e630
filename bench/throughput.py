"""Serving throughput: QPS and latency by client concurrency, beside the hardware limit.

``python -m akidb.bench.throughput [--vectors 50000 --dim 384 --fronts waitress,granian]``

In one run, on the same data (clustered unit vectors, cosine, M=32, efC=200, ef=64,
top-10):

- raw hnswlib in this process: single-query ``knn_query`` from every core (it releases
  the GIL), and 100-query batch calls: the limit the server is measured against;
- ingest into each server: Arrow and JSON batches of 1000 from 2 loaders, each against
  raw ``add_items`` builds of the same batches timed just before and after it;
- search QPS, P50 and P99 at each concurrency, from ``loadgen`` client *processes*
  (keep-alive connections multiplexed over one process per two cores, as ``wrk`` drives
  its connections; each process's CPU is recorded and a saturated one flagged), and
  from ``wrk`` at the same concurrencies where it is installed (a C load generator: no
  client doubt);
- batch search (100 queries per call) over REST and gRPC from 1, 2 and 4 clients.

No assertion: the figures and their ratios are printed and saved (JSON/Markdown/HTML).
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from akidb.bench import common
from akidb.bench import raw as reference
from akidb.bench.clients import process_loop
from akidb.bench.loadgen import Request, closed_loop
from akidb.bench.results import markdown_table, publish, record
from akidb.datagen import usable_cores, vectors
from akidb.harness import Node
from akidb.server.client.grpc import SEARCH_BATCH_METHOD, search_batch_request

M, EFC, EF, K = 32, 200, 64, 10
COLL = "bench/db/t"
SEARCH_PATH = "/v1/tenants/bench/databases/db/collections/t/search"
# Batch calls in flight: one call leaves a core idle while its Python (parse, plan,
# result building) runs beside nothing; from 4 both cores stay busy (1.92 of 2 measured).
BATCH_CLIENTS = (1, 2, 4)


def _progress(message: str) -> None:
    print(f"  .. {message}", flush=True)


def raw_limits(base: np.ndarray, queries: np.ndarray, seconds: float, batch: int
               ) -> tuple[reference.RawIndex, dict[str, float]]:
    ref = reference.build(base, m=M, ef_construction=EFC, ef=EF, batch=batch)
    single_qps = ref.threaded_qps(queries, K, seconds)
    lat, _ = ref.serial(queries[:500], K)
    return ref, {"ingest_per_s": ref.ingest_per_s, "single_qps": single_qps,
                 "single_p50_ms": lat.p50,
                 "batch100_qps": ref.batch_qps(queries, K, seconds, size=100)}


def process_cpu_s(pid: int | None) -> float | None:
    """User+system CPU seconds of a process so far (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ingest(node: Node, base: np.ndarray, batch: int, arrow: bool, name: str) -> float:
    """Vectors/s into a fresh collection ``name`` from 2 loaders (Arrow or JSON bodies)."""
    with node.admin_client(timeout=600) as admin:
        admin.create_collection(name, dimension=base.shape[1], metric="cosine",
                                hnsw={"m": M, "ef_construction": EFC, "ef_search": EF},
                                create_parents=True)
    starts = list(range(0, len(base), batch))

    def load(part: list[int]) -> None:
        with node.admin_client(timeout=600) as c:
            for s in part:
                ids = [str(i) for i in range(s, min(s + batch, len(base)))]
                if arrow:
                    c.upsert_arrays(name, ids, base[s:s + batch])
                else:
                    c.upsert(name, [{"id": i, "vector": v} for i, v in
                                    zip(ids, base[s:s + batch], strict=True)])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(load, [starts[0::2], starts[1::2]]))
    return len(base) / (time.perf_counter() - t0)


def bracketed_ingest(node: Node, base: np.ndarray, batch: int, rounds: int = 1
                     ) -> dict[str, Any]:
    """Arrow then JSON ingest, each rated against the mean of raw ``add_items`` builds
    of the same batches just before and just after it (raw, Arrow, raw, JSON, raw; with
    ``rounds`` > 1 each format is loaded that many times into fresh collections, each
    load between its own raw builds). Raw builds moved between 3500 and 5900/s within one
    afternoon here, and against a single raw figure taken minutes earlier the same code
    read 0.51x and 0.91x; consecutive builds still differ by up to 25%."""
    raws = [reference.build(base, m=M, ef_construction=EFC, ef=EF, batch=batch).ingest_per_s]
    out: dict[str, Any] = {}
    for fmt in ("arrow", "json"):
        trials = []
        for r in range(rounds):
            # The first Arrow collection stays: the search scenarios query it.
            name = (COLL if fmt == "arrow" else COLL + "-json") + (f"-{r}" if r else "")
            per_s = ingest(node, base, batch, fmt == "arrow", name)
            if name != COLL:
                with node.admin_client(timeout=600) as admin:
                    admin.delete_collection(name)
            raws.append(reference.build(base, m=M, ef_construction=EFC, ef=EF,
                                        batch=batch).ingest_per_s)
            raw = (raws[-2] + raws[-1]) / 2
            trials.append({"per_s": per_s, "raw_before": raws[-2], "raw_after": raws[-1],
                           "raw_per_s": raw, "ratio": per_s / raw})
        out[fmt] = median_round(trials)
    return out


def median_round(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The round with the median ratio (the lower of the two middle ones for an even
    count: a figure that was measured, not an average of two), with every round and
    the range of their ratios beside it."""
    ranked = sorted(trials, key=lambda t: t["ratio"])
    ratios = [t["ratio"] for t in ranked]
    return {**ranked[(len(ranked) - 1) // 2], "rounds": trials,
            "ratio_min": ratios[0], "ratio_max": ratios[-1]}


def wrk(url: str, key: str, body: bytes, clients: int, seconds: float) -> dict[str, Any] | None:
    binary = shutil.which("wrk")
    if binary is None:
        return None
    script = Path(tempfile.mkdtemp()) / "search.lua"
    script.write_text('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
                      f'wrk.headers["Authorization"] = "Bearer {key}"\n'
                      f"wrk.body = [[{body.decode()}]]\n")
    path = SEARCH_PATH
    duration = f"{max(1, round(seconds))}s"  # wrk takes whole units only
    done = subprocess.run([binary, "-t", str(min(clients, 2)), "-c", str(clients), "-d",
                           duration, "--latency", "-s", str(script), url + path],
                          capture_output=True, text=True, timeout=seconds + 60)
    out = done.stdout
    shutil.rmtree(script.parent, ignore_errors=True)
    result: dict[str, Any] = {"clients": clients}
    for line in out.splitlines():
        parts = line.split()
        if line.strip().startswith("Requests/sec:"):
            result["qps"] = float(parts[1])
        elif parts[:1] in (["50%"], ["99%"]):
            result[f"p{parts[0][:-1]}_ms"] = _wrk_ms(parts[1])
    if "qps" not in result:
        print(f"  .. wrk gave no figures: {(done.stdout + done.stderr)[-300:]}", flush=True)
        return None
    return result


def _wrk_ms(value: str) -> float:
    """wrk's durations: "812.00us", "1.23ms", "1.02s" -> milliseconds."""
    for suffix, scale in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * scale
    return float(value)


def batch_search(node: Node, ref: reference.RawIndex, queries: np.ndarray, data_plane: str,
                 clients: int, seconds: float, rounds: int = 1) -> dict[str, Any]:
    """``batch_round`` ``rounds`` times; the median round, with the range."""
    return median_round([batch_round(node, ref, queries, data_plane, clients, seconds)
                         for _ in range(rounds)])


def batch_round(node: Node, ref: reference.RawIndex, queries: np.ndarray, data_plane: str,
                clients: int, seconds: float) -> dict[str, Any]:
    """QPS of 100-query batch calls from ``clients`` clients (REST: connections of the
    multiplexed client; gRPC: a process each), with raw ``knn_query`` batches of the
    same queries timed just before and after (machine speed drifts 10-20% over a run;
    the ratio is taken against the mean of the two). Both planes' clients send one
    pre-encoded request (REST: the JSON body, as the single-search load does; gRPC: the
    serialized ``SearchBatchRequest`` with packed float32 vectors) and leave the answers
    undecoded, so the two figures compare the server's planes, not two clients'
    decoding costs."""
    raw_before = ref.batch_qps(queries, K, seconds / 2, size=100)
    block = queries[:100]
    if data_plane == "rest":
        body = orjson.dumps({"searches": [{"vector": q, "k": K} for q in block]},
                            option=orjson.OPT_SERIALIZE_NUMPY)
        measured = closed_loop(Request(node.rest_url, "POST", SEARCH_PATH + "/batch", body,
                                       _headers(node)), clients, seconds)
    else:
        message = search_batch_request(COLL, [{"vector": q, "k": K} for q in block])
        measured = process_loop({"kind": "grpc", "target": node.grpc_target,
                                 "method": SEARCH_BATCH_METHOD,
                                 "messages": [base64.b64encode(
                                     message.SerializeToString()).decode()],
                                 "metadata": {"authorization": f"Bearer {node.admin_key}"}},
                                clients, seconds)
    raw = (raw_before + ref.batch_qps(queries, K, seconds / 2, size=100)) / 2
    qps = measured["qps"] * len(block)
    return {"clients": clients, "qps": qps, "raw_qps": raw, "ratio": qps / raw,
            "p50_ms": measured["p50_ms"], "p99_ms": measured["p99_ms"],
            "errors": measured["errors"], "client_busiest": measured["client_busiest"],
            "client_saturated": measured["client_saturated"]}


def _headers(node: Node) -> dict[str, str]:
    return {"Content-Type": "application/json", "Authorization": f"Bearer {node.admin_key}"}


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__, vectors=50_000, dim=384, batch=1000, seconds=5.0, seed=0,
                       out="reports/throughput")
    ap.add_argument("--clients", type=common.count_list, default=[1, 2, 4, 8, 16, 32, 64],
                    help="concurrencies to measure (client connections)")
    ap.add_argument("--fronts", default="waitress,granian", help="REST fronts to compare")
    ap.add_argument("--rounds", type=common.positive_int, default=1,
                    help="repeat each ingest and batch-search measurement, each beside raw "
                         "runs of its own; the median round is reported with the range")
    args = ap.parse_args(argv)
    concurrencies = args.clients
    fronts = [f for f in args.fronts.split(",") if f]
    if not fronts:
        ap.error("--fronts needs at least one value")
    base = vectors.clustered(args.vectors, args.dim, seed=args.seed)
    queries = vectors.queries(1000, args.dim, seed=args.seed + 1)
    _progress(f"raw hnswlib on {usable_cores()} cores")
    ref, raw = raw_limits(base, queries, args.seconds, args.batch)
    results: dict[str, Any] = {"raw_hnswlib": raw, "fronts": {}}
    body = orjson.dumps({"vector": queries[0], "k": K}, option=orjson.OPT_SERIALIZE_NUMPY)
    for front in fronts:
        node = Node(extra_args=["--http-server", front], fsync="batch",
                    env={"AKIDB_SNAPSHOT_WAL_BYTES": "0"})
        node.start()
        try:
            _progress(f"{front}: ingest (Arrow, JSON), raw builds between")
            r: dict[str, Any] = {"ingest": bracketed_ingest(node, base, args.batch,
                                                            args.rounds)}
            request = Request(node.rest_url, "POST", SEARCH_PATH, body, _headers(node))
            r["loadgen"] = []
            r["wrk"] = []
            # The sweep is rated against raw single-query runs just before and after it:
            # against the one raw figure taken at the start, the machine's drift over the
            # sweep's minutes went into the ratio.
            raw_before = ref.threaded_qps(queries, K, args.seconds)
            for c in concurrencies:
                _progress(f"{front}: {c} client connections")
                cpu0 = process_cpu_s(node.pid)
                measured_lg = closed_loop(request, c, args.seconds)
                cpu1 = process_cpu_s(node.pid)
                measured_lg["server_cores"] = (None if cpu0 is None or cpu1 is None
                                               else (cpu1 - cpu0) / args.seconds)
                r["loadgen"].append(measured_lg)
                measured = wrk(node.rest_url, node.admin_key, body, c, args.seconds)
                if measured is not None:
                    r["wrk"].append(measured)
            raw_after = ref.threaded_qps(queries, K, args.seconds)
            r["raw_single"] = {"before": raw_before, "after": raw_after,
                               "qps": (raw_before + raw_after) / 2}
            _progress(f"{front}: batch search, REST and gRPC, beside raw batches")
            r["batch100"] = {plane: [batch_search(node, ref, queries, plane, c, args.seconds,
                                                  args.rounds)
                                     for c in BATCH_CLIENTS] for plane in ("rest", "grpc")}
            results["fronts"][front] = r
        finally:
            node.close()
    rec = record("throughput", args, {"results": results})
    publish(args.out, rec, _report(results, args.seconds))
    return 0


def _spread(m: dict[str, Any]) -> str:
    """`` (median of 3: 0.88-0.93x)`` when a figure is the median of several rounds."""
    n = len(m.get("rounds", ()))
    return f" (median of {n}: {m['ratio_min']:.2f}-{m['ratio_max']:.2f}x)" if n > 1 else ""


def _batch(b: dict[str, Any]) -> str:
    return (f"{b['clients']} client(s) {b['qps']:.0f} QPS = {b['ratio']:.2f}x raw "
            f"({b['raw_qps']:.0f}){_spread(b)}, P99 {b['p99_ms']:.1f} ms, {b['errors']} "
            f"errors, busiest client {b['client_busiest']:.0%}"
            + (" SATURATED" if b["client_saturated"] else ""))


def _best_single(r: dict[str, Any], best: dict[str, Any]) -> str:
    raw = r["raw_single"]
    line = (f"Best single-search QPS {best['qps']:.0f} at {best['clients']} client "
            f"connections ({best['processes']} processes) "
            f"= {best['qps'] / raw['qps']:.2f}x raw single queries from every core, timed "
            f"just before and after the sweep ({raw['before']:.0f} / {raw['after']:.0f})")
    if r["wrk"]:
        top = max(r["wrk"], key=lambda x: x["qps"])
        line += (f"; wrk {top['qps']:.0f} at {top['clients']} connections = "
                 f"{top['qps'] / raw['qps']:.2f}x")
    return line + "."


def _report(results: dict[str, Any], seconds: float) -> list[str]:
    raw = results["raw_hnswlib"]
    lines = ["# Serving throughput", "",
             f"Raw hnswlib: {raw['single_qps']:.0f} QPS single queries from every core, "
             f"P50 {raw['single_p50_ms']:.3f} ms; {raw['batch100_qps']:.0f} QPS in batches "
             f"of 100; ingest {raw['ingest_per_s']:.0f}/s.", ""]
    for front, r in results["fronts"].items():
        best = max(r["loadgen"], key=lambda x: x["qps"])
        lines += [f"## {front}", "",
                  "Ingest (2 loaders; raw builds just before and after each): "
                  + "; ".join(f"{fmt} {i['per_s']:.0f}/s = {i['ratio']:.2f}x raw "
                              f"({i['raw_before']:.0f} / {i['raw_after']:.0f}){_spread(i)}"
                              for fmt, i in r["ingest"].items()) + ".",
                  "Batch search of 100 per call (raw batches timed beside each): "
                  + "; ".join(f"{plane} {_batch(b)}" for plane, runs in r["batch100"].items()
                              for b in runs) + ". Best: "
                  + ", ".join(f"{plane} {max(b['ratio'] for b in runs):.2f}x raw"
                              for plane, runs in r["batch100"].items()) + ".",
                  _best_single(r, best), ""]
        rows = []
        for lg in r["loadgen"]:
            w = next((x for x in r["wrk"] if x["clients"] == lg["clients"]), None)
            rows.append([f"{lg['clients']} ({lg['processes']})",
                         f"{lg['qps']:.0f}", f"{lg['p50_ms']:.2f}",
                         f"{lg['p99_ms']:.2f}", f"{lg['client_busiest']:.0%}"
                         + (" SATURATED" if lg["client_saturated"] else ""),
                         str(lg["errors"]),
                         f"{lg['client_cpu_s'] / seconds:.2f}",
                         "-" if lg.get("server_cores") is None else f"{lg['server_cores']:.2f}",
                         f"{w['qps']:.0f} / {w.get('p99_ms', float('nan')):.2f}" if w else "-"])
        lines += markdown_table(["clients (processes)", "QPS", "P50 ms", "P99 ms",
                                 "busiest client CPU", "errors", "client cores", "server cores",
                                 "wrk QPS / P99 ms"], rows) + [""]
    return lines


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
