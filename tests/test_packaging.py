"""A production install is `pip install .` and nothing else: every module of the package imports from it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Alembic's env.py runs only inside an `alembic` command (it reads the migration context at import).
NOT_IMPORTABLE_ALONE = {"gateway.migrations.env"}

IMPORT_EVERYTHING = textwrap.dedent("""
    import importlib, json, pkgutil, sys
    import gateway
    skip = set(json.loads(sys.argv[1]))
    names = sorted(m.name for m in pkgutil.walk_packages(gateway.__path__, "gateway.") if m.name not in skip)
    failed = {}
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as error:
            failed[name] = f"{type(error).__name__}: {error}"
    print(json.dumps({"file": gateway.__file__, "imported": len(names), "failed": failed}))
""")


@pytest.mark.integration  # builds a virtual environment and installs into it from the package index
def test_pip_install_dot_without_extras_imports_every_module(tmp_path):
    # A copy of what a source distribution holds, so the build leaves nothing behind in the checkout.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "gateway", source / "gateway", ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # The lock only pins versions (a constraint installs nothing by itself): what gets installed is exactly
    # what setup.cfg's install_requires asks for, without the test or dev extras.
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              "--constraint", str(ROOT / "requirements" / "runtime.lock"), str(source)],
                             capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    import json

    result = subprocess.run([str(python), "-c", IMPORT_EVERYTHING, json.dumps(sorted(NOT_IMPORTABLE_ALONE))],
                            capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert str(venv) in report["file"], "imported the checkout instead of the installed package"
    assert report["failed"] == {}
    assert report["imported"] > 80
    # Nothing from the test or dev extras came along.
    listed = subprocess.run([str(python), "-m", "pip", "list", "--format=freeze"], capture_output=True,
                            text=True, check=True).stdout.lower()
    for extra_only in ("pytest", "moto", "playwright", "hypothesis", "ruff"):
        assert f"\n{extra_only}==" not in f"\n{listed}"
