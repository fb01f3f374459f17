"""``python -m src.extraction [overrides]``: the same as ``python extract.py [overrides]``, which it runs."""

import runpy
from pathlib import Path

runpy.run_path(str(Path(__file__).resolve().parents[2] / "extract.py"), run_name="__main__")
