"""The mutation report's bookkeeping: named equivalents, kinds of change matched by
pattern, and the score over what is left."""

from __future__ import annotations

from pathlib import Path

from akidb.testkube import mutation

REPO_EQUIVALENTS = Path(__file__).resolve().parents[2] / mutation.EQUIVALENT_FILE


def test_patterns_match_only_their_kind_of_change_in_their_module(tmp_path):
    (tmp_path / "eq.toml").write_text('''
"akidb.server.x.x_f__mutmut_1" = "named"

[[pattern]]
module = "server/*.py"
removed = 'np\\.fromiter\\(.*count=len\\(\\w+\\)\\)'
added = 'np\\.fromiter\\((?:(?!count=).)*\\)'
reason = "count= only pre-sizes"
''')
    named, patterns = mutation.load_equivalent(tmp_path / "eq.toml")
    assert named == {"akidb.server.x.x_f__mutmut_1": "named"} and len(patterns) == 1
    drop_count = ("-    a = np.fromiter(it, dtype=np.int64, count=len(rows))\n"
                  "+    a = np.fromiter(it, dtype=np.int64, )")
    other = ("-    a = np.fromiter(it, dtype=np.int64, count=len(rows))\n"
             "+    a = np.fromiter(it, dtype=np.int64, count=len(None))")
    mutants = [mutation.Mutant("akidb.server.collection.x_g__mutmut_1", "survived"),
               mutation.Mutant("akidb.server.collection.x_g__mutmut_2", "survived"),
               mutation.Mutant("akidb.bench.gate.x_h__mutmut_1", "survived")]
    diffs = {mutants[0].name: drop_count, mutants[1].name: other, mutants[2].name: drop_count}
    found = mutation.by_pattern(mutants, diffs, patterns)
    assert list(found) == [mutants[0].name]  # not the other change, not another module
    assert found[mutants[0].name].startswith("count= only pre-sizes")
    scores = mutation.score([*mutants, mutation.Mutant("akidb.server.a.x_k__mutmut_1",
                                                       "killed")], found)
    assert scores["all"] == {"mutants": 4, "killed": 1, "survived": 2, "equivalent": 1,
                             "score": 1 / 3}


def test_the_repositorys_equivalents_file_loads():
    named, patterns = mutation.load_equivalent(REPO_EQUIVALENTS)
    assert named == {} and patterns  # kinds of change only: numbers move with the code
    assert all(p.reason and p.module and p.removed and p.added for p in patterns)
