"""Same-run A/B of two builds: interleaved measurements, a verdict from the noise.

A stored baseline is measured on another day, on a machine in another state; medians
here drift 7-44% between A/A runs of the same code, so a 10% regression hides in that
drift. Here both builds run on this machine in this job. Each round starts both
sides' servers on fresh data dirs (pinned to the same CPUs, the driver on the others),
loads the same data into both batch by batch and asks both every query in turn, the
order alternating ABBA within the round and between rounds (seeded); throughput runs
one side after the other. A burst of noise from outside lands on both sides of a
round, and each round gives one paired candidate/baseline ratio per metric; a fresh
pair of processes per round samples whatever differs between processes (memory
layout, the graph hnswlib's insert threads build). One warm-up round is discarded.

Verdict per metric: ratio = the 20%-trimmed geometric mean of the per-round ratios,
with a bootstrap interval over rounds. A metric regresses when the ratio is worse than
its threshold *and* the interval excludes no change on the bad side (recall's
threshold is its sampling error: any drop beyond that counts).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
import orjson

from akidb.bench.ab_sides import Side
from akidb.bench.environment import rss_bytes
from akidb.bench.loadgen import Request, closed_loop
from akidb.datagen import vectors
from akidb.datagen.groundtruth import exact_knn, recall_at_k
from akidb.harness import Node

COLLECTION = "ab/db/c"
K = 10
CONFIDENCE = 0.95
N_BOOT = 4000
TRIM = 0.2


@dataclass(frozen=True)
class Metric:
    name: str
    scenario: str
    unit: str
    direction: str      # "lower" or "higher" is better
    threshold: float    # smallest change in the bad direction that counts


METRICS = (
    Metric("search_p50_ms", "search", "ms", "lower", 0.05),
    Metric("filtered_p50_ms", "filtered", "ms", "lower", 0.05),
    Metric("search_qps", "throughput", "1/s", "higher", 0.05),
    Metric("ingest_vectors_per_s", "ingest", "1/s", "higher", 0.05),
    Metric("recall_at_10", "recall", "", "higher", 0.0),  # threshold: recall_noise
    Metric("rss_bytes_per_vector", "memory", "B", "lower", 0.05),
)
SCENARIOS = tuple(dict.fromkeys(m.scenario for m in METRICS))


@dataclass(frozen=True)
class Workload:
    """The data every round loads and the queries it asks: identical for both sides."""
    vectors: int = 5000
    dim: int = 128
    queries: int = 200
    batch: int = 500
    clients: int = 4
    load_seconds: float = 2.0
    seed: int = 0

    def build(self) -> dict[str, Any]:
        base = vectors.clustered(self.vectors, self.dim, seed=self.seed)
        queries = vectors.queries(self.queries, self.dim, seed=self.seed + 1)
        cats = np.arange(self.vectors) % 10
        truth, _ = exact_knn(base, queries, K, "cosine")
        return {"base": base, "queries": queries, "cats": cats, "truth": truth}


def split_cpus() -> tuple[set[int], set[int]] | None:
    """(driver, server) halves of this process's CPUs, or None with fewer than two.

    The driver (and its load-generator processes) then never competes with the servers
    for a core; both sides get the same CPUs. Measured here: pinning alone left rounds
    20-30% apart now and then; measuring the two sides in turn within a round is what
    took the per-round ratio's spread down to ~2%."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cpus) < 2:
        return None
    half = len(cpus) // 2
    return set(cpus[:half]), set(cpus[half:])


def _round(sides: tuple[Side, Side], first: int, work: Workload, data: dict[str, Any],
           scenarios: set[str], server_cpus: set[int] | None) -> list[dict[str, float]]:
    """One round: both sides' servers up at once on fresh data dirs, every measurement
    taken from each in turn (``first`` goes first, then the order alternates), so a
    burst of machine noise lands on both. Returns [baseline's, candidate's] samples."""
    nodes = [Node(name=f"ab-{side.label}", fsync="batch", env=side.env, cpus=server_cpus)
             for side in sides]
    try:
        for node in nodes:
            node.start()
        clients = [node.admin_client(timeout=120) for node in nodes]
        try:
            return _measure(nodes, clients, first, work, data, scenarios)
        finally:
            for client in clients:
                client.close()
    finally:
        for node in nodes:
            node.close()


def turns(first: int, j: int) -> tuple[int, int]:
    """Which side goes first at step ``j``: ABBA over the steps of a round."""
    a = first if j % 4 in (0, 3) else 1 - first
    return a, 1 - a


def _measure(nodes: list[Node], clients: list[Any], first: int, work: Workload,
             data: dict[str, Any], scenarios: set[str]) -> list[dict[str, float]]:
    out: list[dict[str, float]] = [{}, {}]
    base, queries = data["base"], data["queries"]
    for client in clients:
        client.create_collection(COLLECTION, dimension=work.dim, metric="cosine",
                                 create_parents=True)
    spent = [0.0, 0.0]
    for j, s in enumerate(range(0, len(base), work.batch)):
        e = min(len(base), s + work.batch)
        ids, payloads = [str(i) for i in range(s, e)], [{"cat": int(c)}
                                                       for c in data["cats"][s:e]]
        for i in turns(first, j):
            started = time.perf_counter()
            clients[i].upsert_arrays(COLLECTION, ids, base[s:e], payloads)
            spent[i] += time.perf_counter() - started
    for i, node in enumerate(nodes):
        out[i]["ingest_vectors_per_s"] = len(base) / spent[i]
        out[i]["rss_bytes_per_vector"] = rss_bytes(node.pid) / len(base)
    if scenarios & {"search", "recall"}:
        ms, found = _interleaved(clients, first, queries, {})
        for i in (0, 1):
            out[i]["search_p50_ms"] = _block_median(ms[i])
            out[i]["recall_at_10"] = recall_at_k(found[i], data["truth"], K)
    if "filtered" in scenarios:
        ms, _ = _interleaved(clients, first, queries, {"filter": {"cat": {"$eq": 3}}})
        for i in (0, 1):
            out[i]["filtered_p50_ms"] = _block_median(ms[i])
    if "throughput" in scenarios:
        body = orjson.dumps({"vector": queries[0], "k": K}, option=orjson.OPT_SERIALIZE_NUMPY)
        for i in (first, 1 - first):
            req = Request(nodes[i].rest_url, "POST",
                          "/v1/tenants/ab/databases/db/collections/c/search", body,
                          {"Content-Type": "application/json",
                           "Authorization": f"Bearer {nodes[i].admin_key}"})
            load = closed_loop(req, work.clients, work.load_seconds)
            out[i]["search_qps"] = load["qps"]
            out[i]["client_saturated"] = float(load["client_saturated"])
    return out


def _interleaved(clients: list[Any], first: int, queries: np.ndarray, options: dict[str, Any]
                 ) -> tuple[list[list[float]], list[list[list[int]]]]:
    """Every query on both sides in turn: per side, latencies (ms) and the ids found."""
    for q in queries[:10]:  # warm-up
        for client in clients:
            client.search(COLLECTION, q, k=K, **options)
    ms: list[list[float]] = [[], []]
    found: list[list[list[int]]] = [[], []]
    for j, q in enumerate(queries):
        for i in turns(first, j):
            started = time.perf_counter()
            result = clients[i].search(COLLECTION, q, k=K, **options)
            ms[i].append((time.perf_counter() - started) * 1000.0)
            found[i].append([int(x) for x in result.ids])
    return ms, found


def _block_median(ms: list[float], blocks: int = 5) -> float:
    """The lowest median of ``blocks`` consecutive blocks: noise from outside only ever
    adds time, so the quietest block is the best estimate of the build's own cost."""
    parts = np.array_split(np.asarray(ms), min(blocks, len(ms)))
    return float(min(np.median(p) for p in parts))


def recall_noise(recall: float, queries: int) -> float:
    """Twice the sampling error of recall@K over ``queries`` queries, relative.

    Two graphs built from the same data by hnswlib's insert threads differ, and on a
    finite query set their recall differs by chance (0.9205 vs 0.9198 was seen in an
    A/A); a drop smaller than this is not evidence of a regression."""
    r = min(max(recall, 1e-6), 1 - 1e-6)
    return 2.0 * float(np.sqrt(r * (1 - r) / (queries * K))) / r


def schedule(rounds: int, seed: int) -> list[int]:
    """Which side goes first in each round (0 = baseline, 1 = candidate): pairs of
    rounds AB|BA or BA|AB at random, so over two rounds the order is ABBA or BAAB."""
    rng = np.random.default_rng(seed)
    order: list[int] = []
    for _ in range(rounds // 2):
        order += [0, 1] if rng.random() < 0.5 else [1, 0]
    return order


def trimmed_mean(rows: np.ndarray) -> np.ndarray:
    """Per row, the mean after dropping the lowest and highest ``TRIM`` share.

    A round now and then runs 20-30% slow for reasons outside either build (a
    neighbour process, a timer tick on the wrong core); a plain mean lets one such
    round move the verdict, the trimmed mean does not."""
    n = rows.shape[1]
    cut = int(n * TRIM)
    ordered = np.sort(rows, axis=1)
    return ordered[:, cut:n - cut].mean(axis=1)


def verdict(metric: Metric, base: list[float], cand: list[float], seed: int = 0
            ) -> dict[str, Any]:
    """Paired samples (base[i], cand[i]) -> ratio, interval, regression."""
    b, c = np.asarray(base, dtype=float), np.asarray(cand, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.log(c) - np.log(b)
    d = d[np.isfinite(d)]
    if len(d) == 0:
        ratio, low, high = 1.0, 1.0, 1.0
    else:
        rng = np.random.default_rng(seed)
        means = trimmed_mean(d[rng.integers(0, len(d), size=(N_BOOT, len(d)))])
        tail = (1.0 - CONFIDENCE) / 2 * 100
        ratio = float(np.exp(trimmed_mean(d[None, :])[0]))
        low, high = (float(np.exp(np.percentile(means, q))) for q in (tail, 100 - tail))
    if metric.direction == "lower":
        regression = ratio > 1.0 + metric.threshold and low > 1.0
    else:
        regression = ratio < 1.0 - metric.threshold and high < 1.0
    return {"unit": metric.unit, "direction": metric.direction,
            "baseline_median": float(np.median(b)), "candidate_median": float(np.median(c)),
            "ratio": ratio, "ci_low": low, "ci_high": high, "threshold": metric.threshold,
            "regression": bool(regression), "pair_ratios": [float(x) for x in np.exp(d)],
            "baseline_samples": [float(x) for x in b], "candidate_samples": [float(x) for x in c]}


def run(baseline: Side, candidate: Side, scenarios: list[str], rounds: int,
        work: Workload, seed: int = 0,
        progress: Callable[[str], None] = lambda _m: None,
        thresholds: dict[str, float] | None = None, pin: bool = True) -> dict[str, Any]:
    """Warm-up, then the interleaved rounds; the per-metric verdicts. ``pin``: the
    driver and the servers on separate halves of the CPUs (``split_cpus``)."""
    wanted = set(scenarios)
    given = thresholds or {}
    metrics = [replace(m, threshold=given.get(m.name, m.threshold)) for m in METRICS
               if m.scenario in wanted]
    sides = (baseline, candidate)
    data = work.build()
    order = schedule(rounds, seed)
    started = time.perf_counter()
    split = split_cpus() if pin else None
    before = os.sched_getaffinity(0) if split else None
    samples: list[list[dict[str, float]]] = []
    saturated = False
    try:
        if split:
            os.sched_setaffinity(0, split[0])
        server_cpus = split[1] if split else None
        progress("warm-up round (discarded)")
        _round(sides, seed % 2, work, data, wanted, server_cpus)
        for n, first in enumerate(order, start=1):
            progress(f"round {n}/{len(order)}: {sides[first].label} first")
            got = _round(sides, first, work, data, wanted, server_cpus)
            for side in got:
                saturated |= bool(side.pop("client_saturated", 0.0))
            samples.append(got)
    finally:
        if before:
            os.sched_setaffinity(0, before)
    results: dict[str, Any] = {}
    for metric in metrics:
        base = [r[0][metric.name] for r in samples]
        cand = [r[1][metric.name] for r in samples]
        if metric.name == "recall_at_10" and metric.name not in given:
            metric = replace(metric, threshold=recall_noise(float(np.median(base)),
                                                            work.queries))
        results[metric.name] = verdict(metric, base, cand, seed)
    return {"baseline": _side_info(baseline), "candidate": _side_info(candidate),
            "scenarios": scenarios, "rounds": rounds,
            "first": ["baseline" if i == 0 else "candidate" for i in order],
            "workload": asdict(work), "seconds": time.perf_counter() - started,
            "confidence": CONFIDENCE, "client_saturated": saturated,
            "cpus": {"driver": sorted(split[0]), "server": sorted(split[1])} if split else None,
            "dependencies_match": baseline.dependencies() == candidate.dependencies(),
            "metrics": results,
            "regressions": [name for name, r in results.items() if r["regression"]]}


def _side_info(side: Side) -> dict[str, Any]:
    return {"spec": side.spec, "commit": side.commit, "dirty": side.dirty,
            "root": str(side.root),
            "env": {k: v for k, v in side.env.items()
                    if k not in ("PYTHONPATH", "PYTHONSAFEPATH")}}
