"""`facegate serve` refuses invalid settings before it binds a port."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "variable, value, message",
    [
        ("FACEGATE_LOG_LEVEL", "verbose", "invalid FACEGATE_LOG_LEVEL='verbose'"),
        ("FACEGATE_THRESHOLD", "abc", "invalid FACEGATE_THRESHOLD='abc'"),
        ("FACEGATE_DEVICE", "gpu", "unknown device 'gpu'"),
        ("FACEGATE_EMBEDDER", "arcface", "unknown embedder 'arcface'"),
    ],
)
def test_serve_invalid_setting_exits(tmp_path: Path, variable: str, value: str, message: str) -> None:
    environment = {key: item for key, item in os.environ.items() if not key.startswith("FACEGATE_")}
    environment[variable] = value
    completed = subprocess.run(
        [sys.executable, "-m", "app.cli", "serve", "--port", "1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**environment, "PYTHONPATH": str(REPO_ROOT)},
        timeout=120,
    )
    assert completed.returncode == 2
    assert message in completed.stderr
    assert "Traceback" not in completed.stderr
