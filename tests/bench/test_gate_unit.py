"""The gate's arithmetic on samples whose answer is known exactly."""

from __future__ import annotations

import json

import pytest

from akidb.bench import gate


def _m(samples, direction="lower", unit="ms"):
    return {"unit": unit, "direction": direction, "samples": samples}


def _one(base, cur, direction="lower", threshold=0.1, **kw):
    (v,) = gate.compare({"x": _m(base, direction)}, {"x": _m(cur, direction)},
                        {"x": threshold}, **kw)
    return v


def test_constant_samples_give_an_exact_ratio_and_interval():
    v = _one([10, 10, 10], [12, 12, 12])
    assert (v.metric, v.unit, v.direction) == ("x", "ms", "lower")
    assert (v.baseline_median, v.current_median) == (10.0, 12.0)
    assert v.ratio == pytest.approx(1.2) and v.ci_low == pytest.approx(1.2)
    assert v.ci_high == pytest.approx(1.2) and v.threshold == 0.1
    assert v.regression and not v.improvement


@pytest.mark.parametrize(("direction", "cur", "threshold", "regression", "improvement"), [
    ("lower", 12, 0.2, False, False),    # exactly at the threshold: not beyond it
    ("lower", 12, 0.19, True, False),
    ("lower", 8, 0.2, False, False),
    ("lower", 8, 0.19, False, True),
    ("higher", 8, 0.2, False, False),
    ("higher", 8, 0.19, True, False),
    ("higher", 12, 0.2, False, False),
    ("higher", 12, 0.19, False, True),
])
def test_direction_and_threshold_boundaries(direction, cur, threshold, regression,
                                            improvement):
    v = _one([10, 10], [cur, cur], direction, threshold)
    assert (v.regression, v.improvement) == (regression, improvement)


def test_noise_within_the_interval_is_no_regression_and_defaults_apply():
    base = [10, 11, 9, 10, 12, 8, 10, 11, 9, 10]
    (v,) = gate.compare({"x": _m(base)}, {"x": _m([s * 1.02 for s in base])})
    assert v.threshold == gate.DEFAULT_THRESHOLD and not v.regression
    assert v.ci_low < 1.02 < v.ci_high or v.ci_low <= 1.02 <= v.ci_high
    again = gate.compare({"x": _m(base)}, {"x": _m([s * 1.02 for s in base])})
    assert again == [v]  # seeded: the same interval every time
    other_seed = gate.compare({"x": _m(base)}, {"x": _m([s * 1.5 for s in base])}, seed=1)
    assert other_seed[0].regression
    (wider,) = gate.compare({"x": _m(base)}, {"x": _m(base)}, confidence=0.999)
    (narrower,) = gate.compare({"x": _m(base)}, {"x": _m(base)}, confidence=0.5)
    assert wider.ci_low <= narrower.ci_low <= narrower.ci_high <= wider.ci_high


def test_metrics_are_compared_in_name_order_and_only_in_common():
    base = {"b": _m([1, 1]), "a": _m([1, 1]), "only_base": _m([1, 1])}
    cur = {"a": _m([1, 1]), "b": _m([3, 3]), "only_cur": _m([1, 1])}
    verdicts = gate.compare(base, cur)
    assert [v.metric for v in verdicts] == ["a", "b"]
    assert [v.regression for v in verdicts] == [False, True]
    with pytest.raises(gate.GateError, match="unknown metrics"):
        gate.compare(base, cur, {"nope": 0.1})
    with pytest.raises(gate.GateError, match="no metric in common"):
        gate.compare({"a": _m([1, 1])}, {"b": _m([1, 1])})
    with pytest.raises(gate.GateError, match="changed direction"):
        gate.compare({"a": _m([1, 1])}, {"a": _m([1, 1], "higher")})
    (zero,) = gate.compare({"a": _m([0, 0])}, {"a": _m([1, 1])})
    assert zero.ratio == float("inf")


def test_render_and_json():
    verdicts = [_one([10, 10], [12, 12]), _one([10, 10], [5, 5], threshold=0.1)]
    verdicts[1].metric = "y"
    text = gate.render(verdicts)
    lines = text.splitlines()
    assert lines[0] == "| metric | better | baseline | current | ratio | CI | threshold | verdict |"
    assert lines[2] == ("| x | lower | 10 ms | 12 ms | 1.200 | [1.200, 1.200] | ±10% | "
                        "REGRESSION |")
    assert lines[3].endswith("| improved |") and text.endswith("\n")
    assert gate.render([_one([10, 10], [10, 10])]).splitlines()[2].endswith("| ok |")
    assert gate.to_json(verdicts)[0]["ratio"] == pytest.approx(1.2)
    assert set(gate.to_json(verdicts)[0]) == {
        "metric", "unit", "direction", "baseline_median", "current_median", "ratio", "ci_low",
        "ci_high", "threshold", "regression", "improvement"}


@pytest.mark.parametrize(("body", "match"), [
    (None, "no such file"),
    ("not json", "not JSON"),
    ("[1, 2]", "no 'metrics'"),
    ('{"metrics": {}}', "no 'metrics'"),
    ('{"metrics": {"x": {"direction": "up", "samples": [1, 2]}}}', "direction"),
    ('{"metrics": {"x": {"direction": "lower", "samples": [1]}}}', "at least 2"),
    ('{"metrics": {"x": {"direction": "lower", "samples": "12"}}}', "at least 2"),
    ('{"metrics": {"x": {"direction": "lower", "samples": [1, "2"]}}}', "finite"),
    ('{"metrics": {"x": {"direction": "lower", "samples": [1, NaN]}}}', "finite"),
    ('{"metrics": {"x": 5}}', "direction"),
])
def test_unusable_result_files(tmp_path, body, match):
    path = tmp_path / "r.json"
    if body is not None:
        path.write_text(body)
    with pytest.raises(gate.GateError, match=match):
        gate.load_result(path)


def test_load_result_and_metrics(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"benchmark": "b", "metrics": {"x": _m([1, 2])}}))
    assert gate.load_result(path)["benchmark"] == "b"
    assert gate.load_metrics(path) == {"x": _m([1, 2])}


@pytest.mark.parametrize(("raw", "want"), [("10%", 0.1), (" 25% ", 0.25), ("0.3", 0.3),
                                           (0.2, 0.2), (0, 0.0), ("0%", 0.0)])
def test_thresholds_parse(raw, want):
    assert gate.parse_threshold(raw) == pytest.approx(want)


@pytest.mark.parametrize("raw", ["abc", "", True, None, [0.1], 1, "100%", -0.1, "-5%", 1.5])
def test_bad_thresholds(raw):
    with pytest.raises(gate.GateError, match="threshold"):
        gate.parse_threshold(raw)


def test_config_round_trip_and_errors(tmp_path):
    path = tmp_path / "deep" / "t.toml"
    gate.write_config(path, {"b": 0.25, "a": 0.125}, comment="one\ntwo")
    text = path.read_text()
    assert text == '# one\n# two\n[thresholds]\na = "12%"\nb = "25%"\n'
    cfg = gate.load_config(path)
    assert cfg.thresholds == {"a": 0.12, "b": 0.25}
    assert cfg.default_threshold is None and cfg.confidence is None
    full = tmp_path / "full.toml"
    full.write_text('default = "7%"\nconfidence = 0.9\n[thresholds]\nx = 0.3\n')
    cfg = gate.load_config(full)
    assert (cfg.default_threshold, cfg.confidence, cfg.thresholds) == (0.07, 0.9, {"x": 0.3})
    for body, match in (("nope = 1", "unknown keys"), ("thresholds = 3", "must be a table"),
                        ("[thresholds]\nx = 'many'", "threshold"), ("default = 'x'", "threshold"),
                        ("confidence = 0.4", "confidence"), ("confidence = true", "confidence"),
                        ("confidence = 1.0", "confidence"), ("[[", "not TOML")):
        bad = tmp_path / "bad.toml"
        bad.write_text(body)
        with pytest.raises(gate.GateError, match=match):
            gate.load_config(bad)
    with pytest.raises(gate.GateError, match="no such file"):
        gate.load_config(tmp_path / "missing.toml")
    assert gate.load_config(_write(tmp_path, "confidence = 0.5\n")).confidence == 0.5


def _write(tmp_path, body):
    path = tmp_path / "c.toml"
    path.write_text(body)
    return path


def test_suggested_thresholds_are_twice_the_largest_drift_with_a_floor():
    runs = [{"x": _m([10, 10]), "y": _m([1, 1])}, {"x": _m([12, 12]), "y": _m([1, 1])},
            {"x": _m([11, 11]), "y": _m([1, 1]), "z": _m([1, 1])}]
    s = gate.suggest_thresholds(runs)
    assert set(s) == {"x", "y"}
    assert s["x"]["max_drift"] == pytest.approx(0.2)  # 12 / 10 - 1
    assert s["x"]["threshold"] == pytest.approx(0.4)
    assert s["y"] == {"max_drift": 0.0, "threshold": gate.DEFAULT_THRESHOLD}
    assert gate.suggest_thresholds(runs, floor=0.5)["x"]["threshold"] == 0.5


def test_the_interval_is_a_percentile_bootstrap_of_the_median_ratio():
    """The documented method, computed independently: resample each side's samples
    with replacement (seeded), take medians, and the ratio's (1-c)/2 and 1-(1-c)/2
    quantiles."""
    import numpy as np

    base = [10.0, 11, 9, 10, 12, 8, 10, 11, 9, 10, 13, 7]
    cur = [11.0, 12, 10, 11, 13, 9, 10, 12, 10, 11, 14, 8]
    for confidence in (0.9, 0.99):
        (v,) = gate.compare({"x": _m(base)}, {"x": _m(cur)}, confidence=confidence,
                            n_boot=500, seed=4)
        rng = np.random.default_rng(4)
        b = np.median(rng.choice(np.asarray(base), size=(500, len(base))), axis=1)
        c = np.median(rng.choice(np.asarray(cur), size=(500, len(cur))), axis=1)
        tail = (1 - confidence) / 2
        want = np.quantile(c / b, tail), np.quantile(c / b, 1 - tail)
        assert (v.ci_low, v.ci_high) == pytest.approx(want, rel=1e-12)
        assert v.ci_low < v.ratio < v.ci_high  # noisy samples: a real interval
    (zero,) = gate.compare({"x": _m([0.0, 0.0, 0.0])}, {"x": _m([1.0, 1.0, 1.0])})
    assert zero.ci_low > 1e300  # a zero baseline divides by the smallest float, not 0


def test_calibration_takes_two_runs_or_more():
    runs = [{"a": _m([10, 10])}, {"a": _m([11, 11])}]
    suggested = gate.suggest_thresholds(runs)
    assert suggested["a"]["max_drift"] == pytest.approx(0.1)
    assert suggested["a"]["threshold"] == pytest.approx(0.2)
    with pytest.raises(gate.GateError) as info:
        gate.suggest_thresholds(runs[:1])
    assert str(info.value) == "calibration needs at least two runs of the same code"


def test_thresholds_files_are_written_where_asked_and_read_strictly(tmp_path):
    where = tmp_path / "a" / "b" / "thresholds.toml"
    gate.write_config(where, {"search_ms": 0.25})
    assert where.read_text() == '[thresholds]\nsearch_ms = "25%"\n'  # no comment: none
    gate.write_config(where, {"search_ms": 0.25}, comment="from 3 runs")
    assert where.read_text().startswith("# from 3 runs\n[thresholds]\n")
    bad = tmp_path / "bad.toml"
    for body, message in (('confidence = "high"\n', "confidence must be a number"),
                          ("confidence = true\n", "confidence must be a number"),
                          ("speed = 1\n", "unknown keys ['speed'] (allowed: default, "
                                          "confidence, [thresholds])")):
        bad.write_text(body)
        with pytest.raises(gate.GateError) as info:
            gate.load_config(bad)
        assert message in str(info.value)


def test_render_is_a_markdown_table_and_units_default_to_none(tmp_path):
    lines = gate.render([_one([10, 10], [12, 12])]).splitlines()
    assert lines[1] == "|---|---|---|---|---|---|---|---|"
    (v,) = gate.compare({"x": {"direction": "lower", "samples": [1, 2]}},
                        {"x": {"direction": "lower", "samples": [1, 2]}})
    assert v.unit == ""
    with pytest.raises(gate.GateError) as info:
        gate.compare({"a": _m([1, 1])}, {"b": _m([1, 1])})
    assert str(info.value) == "the two files have no metric in common"
    empty = tmp_path / "r.json"
    empty.write_text('{"metrics": {}}')
    with pytest.raises(gate.GateError) as info:
        gate.load_result(empty)
    assert str(info.value) == (f"{empty}: no 'metrics' object with samples (run a benchmark "
                               "that records them, e.g. python -m akidb.bench.server_baseline)")


@pytest.mark.parametrize("direction", ["lower", "higher"])
def test_zero_stays_zero_is_no_change(direction):
    """An availability of 0 during a kill in both runs (or 0 errors in both) is not a
    regression; 0 growing to something is, in the bad direction."""
    v = _one([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], direction)
    assert (v.ratio, v.ci_low, v.ci_high) == (1.0, 1.0, 1.0)
    assert not v.regression and not v.improvement
    grew = _one([0.0, 0.0, 0.0], [1.0, 1.0, 1.0], direction)
    assert grew.ratio == float("inf")
    assert grew.regression == (direction == "lower")
    assert grew.improvement == (direction == "higher")
