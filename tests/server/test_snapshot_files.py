"""Index snapshot files: atomic write, CRC checks of index and meta, the catalogue."""

from __future__ import annotations

import json

import pytest

from akidb.server.storage import snapshot as snapshots


def _save(payload: bytes):
    def save(path):
        path.write_bytes(payload)
    return save


def _docs(lines: list[str]):
    def save(path):
        path.write_text("".join(line + "\n" for line in lines))
    return save


def test_write_then_load_round_trips_and_keeps_only_the_newest(tmp_path):
    first = snapshots.write(tmp_path, 5, _save(b"index-five"), {"count": 5})
    second = snapshots.write(tmp_path, 9, _save(b"index-nine"), {"count": 9},
                             _docs(['[0, "a", null, "{}", 1.0]']))
    assert not first.path.exists()  # older snapshots are removed
    loaded = snapshots.load_latest(tmp_path)
    assert loaded is not None and loaded.seq == 9 and loaded.path == second.path
    assert loaded.index_path.read_bytes() == b"index-nine"
    assert loaded.meta["count"] == 9 and loaded.meta["index_bytes"] == len(b"index-nine")
    assert snapshots.verify_documents(loaded).read_text().startswith('[0, "a"')
    assert snapshots.size_bytes(loaded) == sum(p.stat().st_size for p in loaded.path.iterdir())
    assert not list(tmp_path.glob(".tmp-*"))
    assert loaded.path.name == f"{9:020d}"


def test_load_latest_of_nothing(tmp_path):
    assert snapshots.load_latest(tmp_path / "missing") is None
    (tmp_path / "not-a-snapshot").mkdir()
    assert snapshots.load_latest(tmp_path) is None


@pytest.mark.parametrize("damage", ["index_byte", "index_size", "meta_edit", "meta_torn",
                                    "meta_missing_field"])
def test_a_damaged_snapshot_is_skipped_for_an_older_good_one(tmp_path, damage):
    good = snapshots.write(tmp_path / "a", 3, _save(b"old-good"), {"count": 3})
    bad = snapshots.write(tmp_path / "b", 7, _save(b"new-index"), {"count": 7})
    # Put both side by side, as after an interrupted clean-up.
    target = tmp_path / "a" / bad.path.name
    bad.path.rename(target)
    index, meta = target / snapshots.INDEX_FILE, target / snapshots.META_FILE
    if damage == "index_byte":
        index.write_bytes(b"new-indey")
    elif damage == "index_size":
        index.write_bytes(b"new-index-longer")
    elif damage == "meta_edit":
        edited = json.loads(meta.read_text())
        edited["seq"] = 8
        meta.write_text(json.dumps(edited))
    elif damage == "meta_torn":
        meta.write_text(meta.read_text()[:20])
    else:
        edited = json.loads(meta.read_text())
        del edited["index_crc32"]
        edited.pop("meta_crc32")
        meta.write_text(json.dumps(edited))
    loaded = snapshots.load_latest(tmp_path / "a")
    assert loaded is not None and loaded.seq == 3 and loaded.path == good.path


def test_meta_without_its_own_crc_still_loads(tmp_path):
    """Snapshots written before meta.json carried a CRC are accepted on their index CRC."""
    snap = snapshots.write(tmp_path, 4, _save(b"idx"), {"count": 1})
    meta = json.loads((snap.path / snapshots.META_FILE).read_text())
    meta.pop("meta_crc32")
    (snap.path / snapshots.META_FILE).write_text(json.dumps(meta))
    assert snapshots.load_latest(tmp_path).seq == 4


def test_documents_catalogue_is_checked(tmp_path):
    plain = snapshots.write(tmp_path / "p", 2, _save(b"i"), {})
    with pytest.raises(ValueError, match="no documents catalogue"):
        snapshots.verify_documents(plain)
    snap = snapshots.write(tmp_path / "d", 2, _save(b"i"), {}, _docs(["[1]"]))
    (snap.path / snapshots.DOCUMENTS_FILE).write_text("[2]\n")
    with pytest.raises(ValueError, match="differs from the CRC32"):
        snapshots.verify_documents(snap)


def test_the_newest_of_two_valid_snapshots_wins_and_skips_are_logged(tmp_path, caplog):
    import logging

    old = snapshots.write(tmp_path / "a", 3, _save(b"three"), {})
    new = snapshots.write(tmp_path / "b", 8, _save(b"eight"), {})
    new.path.rename(tmp_path / "a" / new.path.name)
    assert snapshots.load_latest(tmp_path / "a").seq == 8
    caplog.set_level(logging.ERROR, "akidb.snapshot")
    for name, body, reason in (
            (snapshots.INDEX_FILE, b"eighT", "index CRC32 differs from meta.json"),
            (snapshots.INDEX_FILE, b"eight!", "index size differs from meta.json")):
        (tmp_path / "a" / new.path.name / name).write_bytes(body)
        assert snapshots.load_latest(tmp_path / "a").seq == 3
        assert f"skipping invalid snapshot {tmp_path / 'a' / new.path.name}: {reason}" \
            in caplog.text
    meta = tmp_path / "a" / new.path.name / snapshots.META_FILE
    edited = json.loads(meta.read_text())
    edited["count"] = 99
    meta.write_text(json.dumps(edited))
    assert snapshots.load_latest(tmp_path / "a").path == old.path
    assert "meta.json differs from its own CRC32 (edited or damaged)" in caplog.text


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_damage_anywhere_in_a_large_index_is_caught(tmp_path, where):
    """The CRC covers every chunk of a file read in pieces (here 3.5 MiB), not only the
    last piece, and matches zlib's CRC-32 of the whole file."""
    import zlib

    payload = bytes(range(256)) * (14 * 1024)  # 3.5 MiB
    snap = snapshots.write(tmp_path, 4, _save(payload), {"count": 1})
    assert snap.meta["index_crc32"] == zlib.crc32(payload)
    offset = {"first": 10, "middle": len(payload) // 2, "last": len(payload) - 10}[where]
    damaged = bytearray(payload)
    damaged[offset] ^= 0x01
    snap.index_path.write_bytes(bytes(damaged))
    assert snapshots.load_latest(tmp_path) is None


def test_rewriting_a_snapshot_replaces_it_and_clears_leftovers(tmp_path):
    import os
    import time

    leftover = tmp_path / f".tmp-{6:020d}-{os.getpid()}"  # an interrupted earlier write
    leftover.mkdir(parents=True)
    (leftover / "junk").write_text("x")
    before = time.time()
    first = snapshots.write(tmp_path, 6, _save(b"first"), {"count": 1})
    assert first.seq == 6 and sorted(p.name for p in first.path.iterdir()) == sorted(
        [snapshots.INDEX_FILE, snapshots.META_FILE])
    assert before - 1 <= first.meta["created_at"] <= time.time() + 1
    second = snapshots.write(tmp_path, 6, _save(b"second"), {"count": 2})  # same seq again
    assert second.path == first.path and second.index_path.read_bytes() == b"second"
    assert snapshots.load_latest(tmp_path).meta["count"] == 2
    assert [p.name for p in tmp_path.iterdir()] == [f"{6:020d}"]


def test_a_snapshot_failing_its_meta_crc_is_logged_with_the_reason(tmp_path, caplog):
    import logging

    snap = snapshots.write(tmp_path, 2, _save(b"idx"), {"count": 1})
    meta = json.loads((snap.path / snapshots.META_FILE).read_text())
    meta["count"] = 99
    (snap.path / snapshots.META_FILE).write_text(json.dumps(meta))
    caplog.set_level(logging.ERROR)
    assert snapshots.load_latest(tmp_path) is None
    assert [r.getMessage() for r in caplog.records] == [
        f"skipping invalid snapshot {snap.path}: meta.json differs from its own CRC32 "
        "(edited or damaged)"]


def test_an_old_entry_that_cannot_be_removed_does_not_fail_the_snapshot(tmp_path,
                                                                        monkeypatch):
    """Clearing old snapshots is best effort: the new one is durable before it starts,
    so a stray file or an undeletable old directory must not turn it into an error."""
    old = snapshots.write(tmp_path, 3, _save(b"old"), {"count": 3})
    (tmp_path / "stray-file").write_text("not a snapshot")
    real_rmtree = snapshots.shutil.rmtree

    def stubborn(path, ignore_errors=False, **kw):
        if path == old.path:
            if not ignore_errors:
                raise PermissionError(13, "Permission denied", str(path))
            return
        return real_rmtree(path, ignore_errors=ignore_errors, **kw)

    monkeypatch.setattr(snapshots.shutil, "rmtree", stubborn)
    new = snapshots.write(tmp_path, 8, _save(b"new"), {"count": 8})
    assert snapshots.load_latest(tmp_path).seq == 8 == new.seq
    assert old.path.exists() and (tmp_path / "stray-file").exists()
