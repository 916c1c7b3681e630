"""``akidb bench run``: one scenario on several drivers, one side-by-side report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from akidb.bench import drivers
from akidb.bench.datasets import Dataset
from akidb.bench.environment import fingerprint
from akidb.bench.results import markdown_table, markdown_to_html
from akidb.bench.scenarios import SCENARIOS, Options
from akidb.bench.traces import markdown as traces_markdown

_COLUMNS = {  # scenario -> (header, how to read it from a result)
    "serial": [("insert s", lambda r: f"{r['insert_s']:.2f}"),
               ("to searchable s", lambda r: f"{r['load_s']:.2f}"),
               ("memory MB", lambda r: "-" if r.get("memory_bytes") is None
                else f"{r['memory_bytes'] / 2**20:.0f}"),
               ("recall", lambda r: f"{r['recall']:.4f}"),
               ("P50 ms", lambda r: f"{r['p50_ms']:.3f}"),
               ("P99 ms", lambda r: f"{r['p99_ms']:.3f}")],
    "filtered": [(f"{sel} {what}", lambda r, sel=sel, key=key: (
        r[sel].get("unsupported", "unsupported") if "unsupported" in r[sel]
        else f"{r[sel][key]:.4g}"))
        for sel in ("1%", "99%") for what, key in (("recall", "recall"),
                                                   ("P50 ms", "p50_ms"))],
    "qps": [("best QPS", lambda r: f"{r['best_qps']:.0f}"),
            ("at clients", lambda r: str(r["best_clients"])),
            ("P50 / P99 ms there", lambda r: "{p50_ms:.2f} / {p99_ms:.2f}".format(**_best(r))),
            ("clients", lambda r: _best(r)["client_kind"]),
            ("busiest client CPU", lambda r: (
                f"{_best(r)['client_busiest']:.0%}" if _best(r)["client_kind"] == "processes"
                else f"n/a (process: {_best(r)['client_busiest']:.0%} of cores)")),
            ("client saturated", lambda r: "yes" if any(x["client_saturated"]
                                                        for x in r["runs"]) else "no")],
    "sweep": [("ef: recall / QPS", lambda r: "; ".join(
        f"{p['ef'] or 'index'}: {p['recall']:.3f} / {p['qps']:.0f}" for p in r["points"])),
              ("best recall", lambda r: f"{max(p['recall'] for p in r['points']):.4f}")],
    "capacity": [("inserted", lambda r: str(r["inserted"])),
                 ("stopped by", lambda r: r["stopped_by"]),
                 ("vectors/s", lambda r: f"{r['per_s']:.0f}"),
                 ("first / last tenth /s", lambda r: "{:.0f} / {:.0f}".format(
                     r["per_s_by_tenth"][0], r["per_s_by_tenth"][-1])
                  if r["per_s_by_tenth"] else "-")],
    "streaming": [("rows/s (target)", lambda r: f"{r['insert_rate']:.0f} "
                                                f"({r['insert_rate_target']:.0f})"
                   + ("" if r["kept_up"] else " FELL BEHIND")),
                  ("searches", lambda r: str(r["searches"])),
                  ("P50 / P99 ms", lambda r: f"{r['p50_ms']:.2f} / {r['p99_ms']:.2f}"),
                  ("recall by quarter", lambda r: " ".join(
                      f"{st['recall']:.3f}" if "recall" in st else "-"
                      for st in r["stages"])),
                  ("P99 by quarter", lambda r: " ".join(f"{st['p99_ms']:.1f}"
                                                        for st in r["stages"]))],
    "freshness": [("probes", lambda r: str(r["probes"])),
                  ("found at first search", lambda r: str(r["visible_at_first_search"])),
                  ("not within timeout", lambda r: str(r["not_visible_within_s"])),
                  ("lag P50 / P99 ms", lambda r: f"{r['lag_p50_ms']:.2f} / "
                                                 f"{r['lag_p99_ms']:.2f}")],
}


def _best(r: dict[str, Any]) -> dict[str, Any]:
    return max(r["runs"], key=lambda x: x["qps"])


def run(scenario: str, driver_specs: list[tuple[str, dict[str, Any]]], data: Dataset,
        opts: Options, progress: Callable[[str], None], traces: int = 0) -> dict[str, Any]:
    """``traces``: keep the slowest N requests' server traces of drivers that can."""
    from akidb.bench.drivers.remote import RemoteDriver

    fn = SCENARIOS[scenario][0]
    results: dict[str, Any] = {}
    slow: dict[str, list[dict[str, Any]]] = {}
    notes: list[str] = []
    workers: list[str] = []
    for name, options in driver_specs:
        driver = drivers.open_driver(name, **options)
        if isinstance(driver, RemoteDriver):
            workers.append(driver.name)
        try:
            results[driver.name] = fn(driver, data, opts, progress)
        except drivers.Unsupported as exc:
            results[driver.name] = {"unsupported": str(exc)}
        finally:
            try:
                driver.drop()
            finally:
                driver.close()
        if traces and hasattr(driver, "slowest_traces"):
            slow[driver.name] = driver.slowest_traces(traces)
    if workers and scenario not in ("qps", "streaming"):  # those two run in the worker
        notes.append(f"{', '.join(workers)} ran in a worker process: their latencies include "
                     "the pipe to it (~0.12 ms a call on the 2-core machine it was measured "
                     "on)")
    return {"benchmark": f"run-{scenario}", "scenario": scenario, "dataset": data.name,
            "vectors": len(data.train), "queries": len(data.test), "dimension": data.dimension,
            "metric": data.metric, "k": opts.k, "environment": fingerprint(),
            "notes": notes + _scenario_notes(scenario), "results": results,
            "slowest_traces": slow}


def _scenario_notes(scenario: str) -> list[str]:
    if scenario == "freshness":
        return ["lag: from the insert's acknowledgement to the end of the first search "
                "that returns the new document (so it includes one search)"]
    if scenario == "streaming":
        return ["a hit is right when it is in the exact top-k of the rows acknowledged "
                "before the search began or before it ended"]
    if scenario != "qps":
        return []
    return ["clients `processes`: one process per client, attached to the server, "
            "latencies merged as HdrHistograms; `threads`: the database lives in its "
            "client's process (embedded), so the clients are threads there and their CPU "
            "is the database's too"]


def _lines(ax: Any, res: dict[str, Any], xs: Callable[[Any], Any],
           ys: Callable[[Any], Any]) -> None:
    """One line per driver."""
    for name, r in res.items():
        ax.plot(list(xs(r)), list(ys(r)), marker="o", label=name)


def _percentile_bars(ax: Any, res: dict[str, Any], p50: str, p99: str, what: str) -> None:
    """A P50 bar per driver with its P99 stacked on top."""
    names = list(res)
    ax.bar(names, [res[n][p50] for n in names], label=f"{what}P50")
    ax.bar(names, [max(0.0, res[n][p99] - res[n][p50]) for n in names],
           bottom=[res[n][p50] for n in names], alpha=0.5, label=f"{what}P99")
    ax.set_ylabel("ms")


def _plot(record: dict[str, Any], path: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = {k: v for k, v in record["results"].items() if "unsupported" not in v}
    if not res:
        return False
    fig, ax = plt.subplots(figsize=(7, 4))
    if record["scenario"] == "sweep":
        _lines(ax, res, lambda r: [p["recall"] for p in r["points"]],
               lambda r: [p["qps"] for p in r["points"]])
        ax.set_yscale("log")
        ax.set_xlabel(f"recall@{record['k']}")
        ax.set_ylabel("QPS (1 client)")
    elif record["scenario"] == "capacity":
        _lines(ax, res, lambda r: range(1, len(r["per_s_by_tenth"]) + 1),
               lambda r: r["per_s_by_tenth"])
        ax.set_xlabel("tenth of the run")
        ax.set_ylabel("vectors/s")
    elif record["scenario"] == "streaming":
        _lines(ax, res, lambda r: [st["stage"] for st in r["stages"]],
               lambda r: [st["p99_ms"] for st in r["stages"]])
        ax.set_xlabel("share of the stream inserted")
        ax.set_ylabel("search P99 ms")
    elif record["scenario"] == "freshness":
        _percentile_bars(ax, res, "lag_p50_ms", "lag_p99_ms", "lag ")
    elif record["scenario"] == "qps":
        _lines(ax, res, lambda r: [x["clients"] for x in r["runs"]],
               lambda r: [x["qps"] for x in r["runs"]])
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("QPS")
    else:
        key = "p50_ms" if record["scenario"] == "serial" else None
        names = list(res)
        if key:
            _percentile_bars(ax, res, "p50_ms", "p99_ms", "")
        else:
            for i, sel in enumerate(("1%", "99%")):
                ax.bar([f"{n}\n{sel}" for n in names],
                       [res[n][sel].get("p50_ms", 0) for n in names], label=sel,
                       alpha=0.6 + 0.2 * i)
        ax.set_ylabel("ms")
    ax.set_title(f"{record['scenario']} on {record['dataset']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def report(record: dict[str, Any], out: Path) -> str:
    import json

    out.mkdir(parents=True, exist_ok=True)
    scenario = record["scenario"]
    cols = _COLUMNS[scenario]
    rows = []
    for name, r in record["results"].items():
        if "unsupported" in r:
            rows.append([name] + [f"unsupported: {r['unsupported']}"] + [""] * (len(cols) - 1))
        else:
            rows.append([name] + [read(r) for _h, read in cols])
    lines = [f"# {scenario}: {record['dataset']} ({record['vectors']} x {record['dimension']}, "
             f"{record['metric']}, {record['queries']} queries, k={record['k']})", "",
             *markdown_table(["driver"] + [h for h, _r in cols], rows), "",
             *(f"- {note}" for note in record["notes"])]
    if record.get("slowest_traces"):
        lines += traces_markdown(record["slowest_traces"])
    if _plot(record, out / f"{record['benchmark']}.png"):
        lines.append("")
        lines.append(f"![{scenario}]({record['benchmark']}.png)")
    text = "\n".join(lines) + "\n"
    (out / f"{record['benchmark']}.json").write_text(json.dumps(record, indent=2))
    (out / f"{record['benchmark']}.md").write_text(text)
    (out / f"{record['benchmark']}.html").write_text(markdown_to_html(text, scenario,
                                                                        record.get("environment")))
    return text
