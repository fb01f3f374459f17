"""Run ``python -m src.extraction`` from tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def cli_command(slides_dir: Path, shards_dir: Path, tmp_path: Path, *overrides: str) -> list[str]:
    """``python -m src.extraction`` on a slides folder, outside the repository's data folders."""
    return [
        sys.executable,
        "-m",
        "src.extraction",
        f"project.slides_dir={slides_dir}",
        f"project.shards_dir={shards_dir}",
        "project.demo=null",
        "project.annotations=null",
        f"paths.output_dir={tmp_path / 'outputs'}",
        "progress=false",
        *overrides,
    ]


def run_cli(cmd: list[str], **env: str) -> subprocess.CompletedProcess:
    """Run a command from the repository root and capture its output."""
    return subprocess.run(
        cmd, check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180, env={**os.environ, **env}
    )
