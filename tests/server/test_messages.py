"""The words of errors that stop a server or refuse a request, exactly: operators act
on them (restart with --repair, remove the whitespace), so they are part of the
behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from akidb.server.auth.cedar import Authorizer
from akidb.server.auth.keys import MIN_ADMIN_KEY_LENGTH, check_admin_key
from akidb.server.errors import BadRequest, StartupError
from akidb.server.storage import snapshot as snapshots
from akidb.server.storage.wal import WalCorruption


def test_wal_corruption_says_where_and_what_to_do():
    exc = WalCorruption(Path("/data/c/wal/00000000000000000001.wal"), 4096, "CRC mismatch")
    assert str(exc) == (
        "WAL corruption in /data/c/wal/00000000000000000001.wal at offset 4096: CRC "
        "mismatch. Acknowledged writes after this point cannot be read; restart with "
        "--repair to keep the valid prefix and drop the rest")
    assert exc.offset == 4096 and exc.path.name.endswith(".wal")


def test_admin_key_refusals_explain_themselves():
    with pytest.raises(StartupError) as info:
        check_admin_key(" padded-admin-key-0123456789 ", "AKIDB_ADMIN_KEY")
    assert str(info.value) == (
        "AKIDB_ADMIN_KEY starts or ends with whitespace, which an Authorization header "
        "cannot carry, so the key could never authenticate; remove the whitespace")
    with pytest.raises(StartupError) as info:
        check_admin_key("short", "/data/admin.key")
    assert str(info.value) == (
        f"/data/admin.key is 5 characters long; an admin key needs at least "
        f"{MIN_ADMIN_KEY_LENGTH} (make one with: python -c \"import secrets; "
        "print(secrets.token_urlsafe(32))\")")


def test_policy_validation_errors_carry_cedars_words(tmp_path):
    from akidb.server.storage.metadata import MetadataStore

    store = MetadataStore(tmp_path / "m.db")
    store.create_tenant("acme", {})
    authz = Authorizer(store)
    bad = 'permit(principal, action == AkiDB::Action::"fly", resource);'
    with pytest.raises(BadRequest) as info:
        authz.validate("acme", bad)
    text = str(info.value)
    assert text.startswith("policies do not validate against the AkiDB schema: ")
    details = info.value.details
    assert isinstance(details, list) and details and all(isinstance(d, str) for d in details)
    assert any("fly" in d for d in details)  # Cedar's own words about the bad action
    assert text == "policies do not validate against the AkiDB schema: " + "; ".join(
        details[:5])
    with pytest.raises(BadRequest) as info:
        authz.validate("acme", "permit(")
    assert str(info.value).startswith("policies do not parse: ")
    store.close()


def test_snapshot_catalogue_errors(tmp_path):
    snap = snapshots.write(tmp_path, 3, lambda p: p.write_bytes(b"index"), {"count": 0})
    with pytest.raises(ValueError) as info:
        snapshots.verify_documents(snap)
    assert str(info.value) == (f"snapshot {snap.path} has no documents catalogue (written "
                               "by an older server)")
    meta = json.loads((snap.path / snapshots.META_FILE).read_text())
    meta["documents_crc32"] = 1
    edited = snapshots.Snapshot(snap.path, snap.seq, meta)
    with pytest.raises(ValueError) as info:  # the meta names a catalogue that is not there
        snapshots.verify_documents(edited)
    assert "has no documents catalogue" in str(info.value)


def test_policy_validation_quotes_at_most_five_errors(tmp_path):
    from akidb.server.storage.metadata import MetadataStore

    store = MetadataStore(tmp_path / "m.db")
    store.create_tenant("acme", {})
    bad = "".join(f'permit(principal, action == AkiDB::Action::"fly{i}", resource);\n'
                  for i in range(7))
    with pytest.raises(BadRequest) as info:
        Authorizer(store).validate("acme", bad)
    details = info.value.details
    assert len(details) >= 7
    assert str(info.value) == ("policies do not validate against the AkiDB schema: "
                               + "; ".join(details[:5]))
    store.close()
