"""Extraction across nodes: ``part=i/n`` extracts the i-th of n disjoint parts of the slides.

``python extract.py -m hydra/launcher=slurm_cpu part=1/4,2/4,3/4,4/4`` runs four jobs; each takes every
n-th slide of the sorted slide names, starting at its i-th (round robin: parts differ by at most one slide),
so the parts cover every slide exactly once and never write the same shard (a shard is one slide's; a slide
is extracted under its own lock anyway). Every job merges its rows into the shard folder's
``extraction_report.csv`` under the report's lock, so once all parts ran it lists every slide. All parts must
see the same slides (the same ``project`` and ``slides``); re-running a part skips its completed slides.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeVar

from src.errors import ConfigError

T = TypeVar("T")
PART = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def parse_part(part: str | None) -> tuple[int, int] | None:
    """``"2/8"`` → ``(2, 8)``; None or ``""`` → None (every slide).

    Raises:
        ConfigError: not ``i/n`` with ``1 <= i <= n`` (names the key and the value).
    """
    if part is None or str(part).strip() in ("", "null", "None"):
        return None
    match = PART.match(str(part))
    if not match or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise ConfigError(f"part={part!r}: use i/n with 1 <= i <= n, e.g. part=1/8 (the first of 8 parts)")
    return int(match.group(1)), int(match.group(2))


def slide_part(slides: Mapping[str, T], part: str | None) -> dict[str, T]:
    """The slides of ``part`` (``"i/n"``): the sorted names at positions i-1, i-1+n, i-1+2n, ...; all for None."""
    parsed = parse_part(part)
    if parsed is None:
        return dict(slides)
    index, count = parsed
    names = sorted(slides)[index - 1 :: count]
    return {name: slides[name] for name in names}
