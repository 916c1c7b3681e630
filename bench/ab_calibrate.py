"""How far the A/B gate can be trusted on this machine: false alarms and power.

``--aa`` real A/A runs (this checkout against itself) give the false-alarm rate, then
``--runs`` runs per injected search slowdown (``AKIDB_TEST_SEARCH_DELAY_MS`` sized as a
share of the measured median search latency) give the detection rate. The same runs
are also judged the stored-baseline way (``bench compare``'s view: this run's median
against the first A/A run's baseline median, at a fixed threshold), side by side. A
simulation with the measured round-to-round noise gives the false-alarm and detection
rates over many more runs than the machine has time for.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from akidb.bench import ab, common
from akidb.bench.ab_sides import Sides
from akidb.bench.results import markdown_table, publish, record

SEARCH = next(m for m in ab.METRICS if m.name == "search_p50_ms")


def _one(env: dict[str, str], rounds: int, work: ab.Workload, seed: int) -> dict[str, Any]:
    with Sides(".", ".", {}, env) as (base, cand):
        return ab.run(base, cand, ["search", "ingest"], rounds, work, seed)


def simulate(sd: float, pairs: int, shift: float, trials: int, seed: int = 0) -> float:
    """Share of simulated runs (paired log-ratios ~ N(log(1+shift), sd)) judged regressed."""
    rng = np.random.default_rng(seed)
    hits = 0
    for t in range(trials):
        d = rng.normal(np.log1p(shift), sd, pairs)
        base = np.ones(pairs)
        hits += ab.verdict(SEARCH, list(base), list(np.exp(d)), seed=t)["regression"]
    return hits / trials


def main(argv: list[str] | None = None) -> int:
    ap = common.parser(__doc__, vectors=ab.Workload.vectors, dim=ab.Workload.dim,
                       queries=ab.Workload.queries, out="reports/ab-calibration")
    ap.add_argument("--aa", type=int, default=20, help="A/A runs")
    ap.add_argument("--runs", type=int, default=10, help="runs per injected slowdown")
    ap.add_argument("--slowdowns", default="5,10,20", help="percent of the median search")
    ap.add_argument("--rounds", type=int, default=8, help="rounds (the CI's size)")
    ap.add_argument("--stored-threshold", type=float, default=0.14,
                    help="compare's threshold for search latency (the committed one)")
    ap.add_argument("--trials", type=int, default=2000, help="simulated runs")
    args = ap.parse_args(argv)
    work = ab.Workload(args.vectors, args.dim, args.queries)
    runs: list[dict[str, Any]] = []

    def one(env: dict[str, str], label: str, seed: int) -> dict[str, Any]:
        r = _one(env, args.rounds, work, seed)
        s = r["metrics"]["search_p50_ms"]
        print(f"{label} seed {seed}: ratio {s['ratio']:.3f} [{s['ci_low']:.3f}, "
              f"{s['ci_high']:.3f}] regressions {r['regressions']} ({r['seconds']:.0f} s)",
              flush=True)
        runs.append({"label": label, "env": env, "result": r})
        return r

    aa = [one({}, "A/A", i) for i in range(args.aa)]
    stored = aa[0]["metrics"]["search_p50_ms"]["baseline_median"]
    median = float(np.median([r["metrics"]["search_p50_ms"]["baseline_median"] for r in aa]))
    rows, summary = [], {}

    def judge(label: str, group: list[dict[str, Any]], skip_first: bool) -> None:
        ab_hits = [bool(r["regressions"]) for r in group]
        cand = [r["metrics"]["search_p50_ms"]["candidate_median"] for r in group]
        stored_hits = [c / stored > 1 + args.stored_threshold for c in cand]
        stored_tight = [c / stored > 1 + SEARCH.threshold for c in cand]
        if skip_first:  # the first A/A run is the stored baseline itself
            stored_hits, stored_tight = stored_hits[1:], stored_tight[1:]
        summary[label] = {"runs": len(group), "ab_flagged": sum(ab_hits),
                          "stored_flagged": sum(stored_hits),
                          "stored_tight_flagged": sum(stored_tight),
                          "seconds_median": float(np.median([r["seconds"] for r in group]))}
        rows.append([label, f"{sum(ab_hits)}/{len(ab_hits)}",
                     f"{sum(stored_hits)}/{len(stored_hits)}",
                     f"{sum(stored_tight)}/{len(stored_tight)}",
                     f"{summary[label]['seconds_median']:.0f} s"])

    judge("A/A", aa, True)
    for pct in (float(p) for p in args.slowdowns.split(",")):
        delay = median * pct / 100
        env = {"AKIDB_TEST_SEARCH_DELAY_MS": f"{delay:.4f}"}
        group = [one(env, f"+{pct:g}%", 100 + i) for i in range(args.runs)]
        judge(f"+{pct:g}% ({delay:.3f} ms)", group, False)
    logs = np.concatenate([np.log(r["metrics"]["search_p50_ms"]["pair_ratios"]) for r in aa])
    sd = float(np.std(logs, ddof=1))
    pairs = args.rounds
    sim = {"pair_log_sd": sd, "pairs": pairs,
           "false_alarm": simulate(sd, pairs, 0.0, args.trials),
           "detect_5": simulate(sd, pairs, 0.05, args.trials),
           "detect_10": simulate(sd, pairs, 0.10, args.trials)}
    rec = record("ab_calibrate", args, {"median_search_ms": median, "stored_median": stored,
                                          "summary": summary, "simulation": sim, "runs": runs})
    lines = ["# A/B gate calibration (search latency)", "",
             f"Median search P50 {median:.3f} ms; {args.rounds} rounds per side; stored "
             f"baseline = the first A/A run's baseline median ({stored:.3f} ms).", "",
             *markdown_table(["candidate", "A/B flagged", f"stored, {args.stored_threshold:.0%}"
                              " threshold", f"stored, {SEARCH.threshold:.0%} threshold",
                              "run time"], rows), "",
             f"Simulation ({args.trials} runs, paired log-ratio sd {sd:.4f} from the A/A "
             f"runs): false alarms {sim['false_alarm']:.2%}, detection at +5% "
             f"{sim['detect_5']:.1%}, at +10% {sim['detect_10']:.1%}."]
    publish(args.out, rec, lines)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
