"""Installed into someone else's environment: one namespace, nothing generic at top level."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GENERIC = ["server", "harness", "bench", "chaos", "datagen", "fixtures", "bulk", "testkube"]

USER_TEST = '''
import server

def test_own_server_package_beside_the_plugin(akidb_client):
    assert server.__version__ == "the user's own"
    akidb_client.create_collection("t/d/c", dimension=2, create_parents=True)
    akidb_client.upsert("t/d/c", [{"id": "a", "vector": [1, 0]}])
    assert akidb_client.search("t/d/c", [1, 0], k=1).ids == ["a"]
'''


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv with ``pip install .`` (not editable) of this checkout."""
    work = tmp_path_factory.mktemp("install")
    # A copy of the sources: building in place would leave build/ in the checkout.
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".venv", ".git", "mutants", "reports", "build", "*.egg-info", "__pycache__", "tests"))
    venv = work / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(source), "pytest"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return venv


def test_only_the_akidb_namespace_is_importable(installed, tmp_path):
    code = ("import importlib.util, sys; "
            f"print([n for n in {GENERIC!r} if importlib.util.find_spec(n)]); "
            "from akidb import Client, Cluster; print(Client.__module__, Cluster.__module__)")
    out = subprocess.run([str(installed / "bin" / "python"), "-c", code], capture_output=True,
                         text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "[]"
    assert lines[1] == "akidb.server.client.client akidb.harness.cluster"
    site = next((installed / "lib").glob("python*/site-packages"))
    assert not any((site / name).exists() for name in GENERIC)
    cli = subprocess.run([str(installed / "bin" / "akidb"), "--help"], capture_output=True,
                         text=True, timeout=120)
    assert cli.returncode == 0 and "serve" in cli.stdout and "bench" in cli.stdout


def test_every_package_of_the_checkout_is_installed(installed, tmp_path):
    """A subpackage missing from pyproject's package list works in the checkout and is
    absent from the wheel; every folder with an __init__.py must be installed."""
    names = sorted("akidb." + ".".join(init.parent.relative_to(ROOT).parts)
                   for top in GENERIC for init in (ROOT / top).rglob("__init__.py")
                   if "__pycache__" not in init.parts)
    code = ("import importlib.util; "
            f"print([n for n in {names!r} if importlib.util.find_spec(n) is None])")
    out = subprocess.run([str(installed / "bin" / "python"), "-c", code], capture_output=True,
                         text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", f"not installed: {out.stdout.strip()}"
    assert "akidb.bench.drivers" in names


def test_a_project_with_its_own_server_package_runs_the_plugin(installed, tmp_path):
    (tmp_path / "server").mkdir()
    (tmp_path / "server" / "__init__.py").write_text('__version__ = "the user\'s own"\n')
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_user.py").write_text(USER_TEST)
    done = subprocess.run([str(installed / "bin" / "python"), "-m", "pytest", "-q", "tests",
                           "-p", "no:cacheprovider"], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "1 passed" in done.stdout
