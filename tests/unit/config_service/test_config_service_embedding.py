"""The embedding example in the docs runs as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import config_service

EXAMPLE = Path(config_service.__file__).parent / "examples" / "embedded.py"


def test_the_embedding_example_runs_and_reads_the_pushed_value() -> None:
    result = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "refresh result: REFRESH_RESULT_APPLIED" in result.stdout
    assert "feature_flag = 'on' (version 1)" in result.stdout
