"""Import checkpoints: saved atomically, and refused for another file or target."""

from __future__ import annotations

import os

import pytest

from akidb.bulk import checkpoint as ckpt
from akidb.datagen.io import DatasetError


def test_fresh_save_and_resume(tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text("{}\n")
    state = ckpt.Checkpoint.fresh(data, "t/d/c")
    assert (state.rows_done, state.imported, state.rejected) == (0, 0, 0)
    assert state.file == str(data.resolve()) and state.size == 3
    state.rows_done, state.imported, state.rejected = 10, 8, 2
    where = tmp_path / "deep" / "ck.json"
    state.save(where)
    assert not where.with_suffix(".tmp").exists()
    back = ckpt.load_for_resume(where, data, "t/d/c")
    assert (back.rows_done, back.imported, back.rejected) == (10, 8, 2)


def test_default_path_depends_on_file_and_collection(tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text("{}\n")
    a = ckpt.default_path(data, "t/d/c")
    assert a.parent == ckpt.DEFAULT_DIR and a.name.startswith("rows-")
    assert a != ckpt.default_path(data, "t/d/other")
    assert a == ckpt.default_path(data, "t/d/c")


@pytest.mark.parametrize("change", ["collection", "size", "mtime", "other_file"])
def test_resume_refuses_a_changed_file_or_target(tmp_path, change):
    data = tmp_path / "rows.jsonl"
    data.write_text("{}\n")
    where = tmp_path / "ck.json"
    ckpt.Checkpoint.fresh(data, "t/d/c").save(where)
    collection, path = "t/d/c", data
    if change == "collection":
        collection = "t/d/x"
    elif change == "size":
        data.write_text("{}\n{}\n")
    elif change == "mtime":
        st = data.stat()
        os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns + 10_000_000))
    else:
        path = tmp_path / "other.jsonl"
        path.write_text("{}\n")
    with pytest.raises(DatasetError, match="differs"):
        ckpt.load_for_resume(where, path, collection)


def test_missing_or_unreadable_checkpoints(tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text("{}\n")
    with pytest.raises(DatasetError, match="no checkpoint"):
        ckpt.load_for_resume(tmp_path / "none.json", data, "t/d/c")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(DatasetError, match="unreadable"):
        ckpt.load_for_resume(tmp_path / "bad.json", data, "t/d/c")
    (tmp_path / "odd.json").write_text('{"nonsense": 1}')
    with pytest.raises(DatasetError, match="unreadable"):
        ckpt.load_for_resume(tmp_path / "odd.json", data, "t/d/c")


def test_checkpoints_nest_and_their_refusals_say_what_to_do(tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text("{}\n")
    where = tmp_path / "a" / "b" / "c" / "ck.json"  # several missing directories
    ckpt.Checkpoint.fresh(data, "t/d/c").save(where)
    assert where.exists() and [p.name for p in where.parent.iterdir()] == ["ck.json"]
    missing = tmp_path / "none.json"
    with pytest.raises(DatasetError) as info:
        ckpt.load_for_resume(missing, data, "t/d/c")
    assert str(info.value) == (f"--resume: no checkpoint at {missing}; run without "
                               "--resume first")
    with pytest.raises(DatasetError) as info:
        ckpt.load_for_resume(where, data, "t/d/other")
    assert str(info.value) == (
        f"--resume: checkpoint {where} is for {data.resolve()} -> t/d/c as it was then "
        "(size 3); the file or the target differs, so resuming could skip or repeat rows")
