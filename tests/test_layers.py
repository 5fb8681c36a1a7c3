"""The layer rules ([tool.importlinter] in pyproject.toml) hold: each package imports only the
packages below it (pipelines > connectors > quality > entity_resolution > feeds > warehouse > core),
entity_resolution imports neither the warehouse nor Dagster, and core imports none of the others.

Runs Import Linter's `lint-imports` (the `test` extra) and fails with its report, which names each
offending import and chain."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint_imports() -> str:
    here = Path(sys.executable).parent / "lint-imports"
    found = str(here) if here.exists() else shutil.which("lint-imports")
    assert found, "lint-imports not found: install the test extra (pip install -e '.[test]')"
    return found


def test_imports_follow_the_layers() -> None:
    done = subprocess.run([lint_imports(), "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    report = (done.stdout + done.stderr).strip()
    assert done.returncode == 0, f"import-linter: a layer contract is broken\n\n{report}"
    assert "0 broken" in report, report
