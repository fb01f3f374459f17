"""Run ``python extract.py`` from tests, or compose its config to run it in-process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from omegaconf import DictConfig

from src.config import REPO_ROOT, compose


def cli_overrides(slides_dir: Path, shards_dir: Path, tmp_path: Path, *overrides: str) -> list[str]:
    """The overrides of ``extract.py`` for a slides folder, outside the repository's data folders."""
    return [
        f"project.slides_dir={slides_dir}",
        f"project.shards_dir={shards_dir}",
        "project.demo=null",
        "project.annotations=null",
        f"paths.output_dir={tmp_path / 'outputs'}",
        "progress=false",
        *overrides,
    ]


def cli_command(slides_dir: Path, shards_dir: Path, tmp_path: Path, *overrides: str) -> list[str]:
    """``python extract.py`` on a slides folder (see `cli_overrides`)."""
    return [sys.executable, "extract.py", *cli_overrides(slides_dir, shards_dir, tmp_path, *overrides)]


def extract_config(slides_dir: Path, shards_dir: Path, tmp_path: Path, *overrides: str) -> DictConfig:
    """The config ``extract.py`` composes for the same arguments, for ``src.commands.extract.run`` in-process."""
    return compose(cli_overrides(slides_dir, shards_dir, tmp_path, *overrides), config_name="extract")


def run_cli(cmd: list[str], **env: str) -> subprocess.CompletedProcess:
    """Run a command from the repository root and capture its output."""
    return subprocess.run(
        cmd, check=False, cwd=REPO_ROOT, capture_output=True, text=True, timeout=180, env={**os.environ, **env}
    )
