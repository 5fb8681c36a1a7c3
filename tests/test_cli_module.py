"""The CLI is importable in any order and runs as `python -m pipelines.cli` (no import cycle)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ("simulate", "check-config", "migrate", "run", "quarantine", "resolve", "evaluate", "explain",
            "history", "events", "audit", "serve", "report", "validate", "tasks", "holds", "supervision",
            "hub", "review", "subscription", "feed", "token")


def _python(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=180)


def test_python_m_pipelines_cli_help() -> None:
    result = _python("-m", "pipelines.cli", "--help")
    assert result.returncode == 0, result.stderr
    for command in COMMANDS:
        assert f" {command} " in result.stdout, command
    run = _python("-m", "pipelines.cli", "run", "--help")
    assert run.returncode == 0, run.stderr
    assert "--station" in run.stdout and "--wait" in run.stdout


def test_command_modules_import_before_the_app() -> None:
    """Each command module imports on its own, before pipelines.cli: shared pieces come from
    pipelines.cli_common, and nothing imports pipelines.cli back."""
    code = ("import importlib, sys\n"
            "for name in sys.argv[1:]:\n"
            "    importlib.import_module(name)\n"
            "from pipelines.cli import app\n")
    modules = ["pipelines.cli_api", "pipelines.cli_feeds", "pipelines.cli_hub", "pipelines.cli_quality",
               "pipelines.cli_report", "pipelines.cli_pipeline", "pipelines.cli_resolution"]
    result = _python("-c", code, *modules)
    assert result.returncode == 0, result.stderr
    for name in modules:
        source = (ROOT / (name.replace(".", "/") + ".py")).read_text(encoding="utf-8")
        assert "from pipelines.cli import" not in source and "import pipelines.cli\n" not in source, name
