"""The docs cannot rot: README.md, docs/ and benchmarks/README.md are checked against the code.

- every fenced ``python train.py|predict.py|extract.py …`` command composes (what ``--cfg job`` would print,
  in-process: ``src.config.compose`` with the script's config and the command's overrides);
- every test file (``tests/…py``, optionally ``::test_name``) and every ``src/`` path the docs name exists;
- every relative link resolves to a file, and a ``#anchor`` into a Markdown file to one of its headings;
- README.md stays a front door (at most ``README_MAX_LINES`` lines).

How a command becomes a composition (so no command is skipped):
- ``<name>`` placeholders become ``name`` (``model_path=outputs/runs/<run>`` → ``outputs/runs/run``), shell
  variables become ``1`` (``validation.folds=[${SLURM_ARRAY_TASK_ID}]`` → ``[1]``);
- under ``-m`` each sweep composes its first value (an ``interval(a, b)`` its start), and ``epochs=1,5`` is
  ``epochs=[1,5]``, as the grid sweeper reads it (``src.hpsearch.grid.epochs_as_list``);
- ``--config-dir DIR``: the docs show each file such a folder needs as a fenced YAML block whose first line is
  ``# DIR/<path>.yaml`` (a site's launcher file); they are written into a temporary folder on Hydra's search
  path. A block headed ``# conf/<group>/<name>.yaml`` (a user's own project) is added the same way.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import IntervalSweep

from src.config import compose
from src.hpsearch.grid import epochs_as_list

REPO = Path(__file__).resolve().parents[1]
README_MAX_LINES = 220
#: The config each entry point composes (train.py, predict.py: @hydra.main; extract.py: conf/extract.yaml).
SCRIPTS = {"train.py": "train", "predict.py": "predict", "extract.py": "extract", "-m src.extraction": "extract"}
COMMAND = re.compile(r"^\s*(?:\$\s+)?python\s+(train\.py|predict\.py|extract\.py|-m src\.extraction)(?=\s|$)(.*)$")
FLAGS_WITH_VALUE = {"--config-dir", "-cd", "--config-name", "-cn", "--cfg", "-c", "--package", "-p"}


def doc_files() -> list[Path]:
    """README.md, every page under docs/ and benchmarks/README.md."""
    return [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md")), REPO / "benchmarks" / "README.md"]


@dataclass(frozen=True)
class Block:
    """A fenced code block: its file, first line number, info string and lines."""

    path: Path
    line: int
    lang: str
    lines: tuple[str, ...]


def fenced_blocks(path: Path) -> list[Block]:
    """Every fenced (```) code block of a Markdown file, indented ones included."""
    blocks, current, start, lang = [], None, 0, ""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            if current is None:
                current, start, lang = [], number, stripped[3:].strip()
            else:
                blocks.append(Block(path, start, lang, tuple(current)))
                current = None
        elif current is not None:
            current.append(line)
    return blocks


def fenced_commands() -> list[tuple[str, str]]:
    """(where, command) for every python train.py/predict.py/extract.py line of a fenced block."""
    found = []
    for path in doc_files():
        for block in fenced_blocks(path):
            lines = list(block.lines)
            i = 0
            while i < len(lines):
                first = i
                command = lines[i]
                while command.rstrip().endswith("\\") and i + 1 < len(lines):
                    i += 1
                    command = command.rstrip()[:-1] + " " + lines[i].strip()
                if COMMAND.match(command):
                    found.append((f"{path.relative_to(REPO)}:{block.line + first + 1}", command.strip()))
                i += 1
    return found


def inline_commands() -> list[tuple[str, str]]:
    """(where, command) for every inline-code ``python train.py …`` (tables and prose) outside fenced blocks.

    Inline sketches with a placeholder (``experiment=<name>``) or an ellipsis (``encoder=...``) are left out: they
    name a kind of command, not one to run.
    """
    found = []
    for path in doc_files():
        fenced = False
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip().startswith("```"):
                fenced = not fenced
                continue
            for span in re.findall(r"`([^`]+)`", line) if not fenced else []:
                if COMMAND.match(span) and not re.search(r"<|\.\.\.|…", span):  # sketches, not commands
                    found.append((f"{path.relative_to(REPO)}:{number}", span))
    return found


def site_files() -> dict[str, str]:
    """Config files the docs show in full: ``# <path>.yaml`` on the first line of a YAML block → its text."""
    files = {}
    for path in doc_files():
        for block in fenced_blocks(path):
            if block.lang == "yaml" and block.lines and block.lines[0].startswith("# ") and ".yaml" in block.lines[0]:
                files[block.lines[0][2:].split()[0]] = "\n".join(block.lines[1:]) + "\n"
    return files


@pytest.fixture(scope="module")
def search_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The docs' own config files written out: the user's ``conf/`` additions and each ``--config-dir``."""
    root = tmp_path_factory.mktemp("doc_configs")
    dirs = {"conf": root / "conf"}
    groups = {p.name for p in (REPO / "conf").iterdir() if p.is_dir()}
    for name, text in site_files().items():
        parts = name.split("/")
        at = next(i for i, part in enumerate(parts) if part in groups)  # the folder above the config group
        top, rest = "/".join(parts[:at]), "/".join(parts[at:])
        dirs.setdefault(top, root / f"dir{len(dirs)}")
        target = dirs[top] / rest
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return dirs


def first_of_sweeps(overrides: list[str]) -> list[str]:
    """What one job of ``-m`` composes: the first value of every sweep (interval sweeps: their start)."""
    overrides = [epochs_as_list(o) for o in overrides]
    out = []
    for override, parsed in zip(overrides, OverridesParser.create().parse_overrides(overrides), strict=True):
        if not parsed.is_sweep_override():
            out.append(override)
        elif isinstance(parsed.value(), IntervalSweep):
            out.append(f"{parsed.get_key_element()}={parsed.value().start}")
        else:
            out.append(f"{parsed.get_key_element()}={next(iter(parsed.sweep_string_iterator()))}")
    return out


def composition(command: str, search_dirs: dict[str, Path]) -> tuple[str, list[str]]:
    """The config name and overrides that ``command`` composes (shell quoting, comments and flags applied)."""
    command = re.sub(r"<([^<>]+)>", lambda m: re.sub(r"\W+", "_", m.group(1)), command)
    command = re.sub(r"\$\{?[A-Za-z_]\w*\}?", "1", command)
    match = COMMAND.match(command)
    assert match is not None
    config_name = SCRIPTS[match.group(1)]
    words = shlex.split(match.group(2), comments=True)
    overrides, multirun, extra_dirs = [], False, [search_dirs["conf"]]
    while words:
        word = words.pop(0)
        if word in ("-m", "--multirun"):
            multirun = True
        elif word in FLAGS_WITH_VALUE:
            value = words.pop(0)
            if word in ("--config-dir", "-cd"):
                assert value in search_dirs, f"--config-dir {value}: no '# {value}/...yaml' block in the docs"
                extra_dirs.append(search_dirs[value])
            elif word in ("--config-name", "-cn"):
                config_name = value
        elif word.startswith("-"):
            pytest.fail(f"unknown flag {word!r} in: {command}")
        else:
            overrides.append(word)
    if multirun:
        overrides = first_of_sweeps(overrides)
    searchpath = ",".join(f"file://{d}" for d in extra_dirs)
    return config_name, [f"hydra.searchpath=[{searchpath}]", *overrides]


COMMANDS = fenced_commands() + inline_commands()


def test_docs_show_commands() -> None:
    """The scan finds the docs' commands (a broken scan would pass every command test vacuously)."""
    scripts = {COMMAND.match(c).group(1) for _, c in fenced_commands()}
    assert {"train.py", "predict.py", "extract.py"} <= scripts
    assert len(fenced_commands()) >= 40


@pytest.mark.parametrize(("where", "command"), COMMANDS, ids=[w for w, _ in COMMANDS])
def test_command_composes(where: str, command: str, search_dirs: dict[str, Path]) -> None:
    """Every fenced (and inline-code) command composes with the same overrides, as ``--cfg job`` would."""
    config_name, overrides = composition(command, search_dirs)
    try:
        compose(overrides, config_name=config_name)
    except Exception as error:  # any failure is the doc's, reported with its place
        pytest.fail(f"{where}: {command}\n  does not compose: {type(error).__name__}: {error}")


def test_composition_rejects_a_bad_command(search_dirs: dict[str, Path]) -> None:
    """The check can fail: a misspelt option, or a sweep without -m, does not compose."""
    for bad in ("python train.py model=resnet19", "python train.py optimizer.lr=1e-3,1e-4"):
        config_name, overrides = composition(bad, search_dirs)
        with pytest.raises(Exception):  # noqa: B017 - Hydra raises several kinds
            compose(overrides, config_name=config_name)


def test_sweeps_compose_their_first_job(search_dirs: dict[str, Path]) -> None:
    """Under -m a sweep is one job's value; epochs stay a list; an interval gives its start."""
    _, overrides = composition(
        "python train.py -m 'validation.folds=[1],[2]' epochs=1,5 'optimizer.lr=tag(log,interval(1e-4,1e-2))'",
        search_dirs,
    )
    assert overrides[1:] == ["validation.folds=[1]", "epochs=[1,5]", "optimizer.lr=0.0001"]


def named_paths(pattern: str) -> list[tuple[str, str]]:
    """(where, path) for every match of ``pattern`` in the docs' text."""
    found = []
    for path in doc_files():
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            found += [(f"{path.relative_to(REPO)}:{number}", m.group(0)) for m in re.finditer(pattern, line)]
    return found


def test_named_tests_exist() -> None:
    """Every ``tests/…py`` (and ``::test_name``) the docs name, the guarantees' tests among them, exists."""
    missing = []
    for where, name in named_paths(r"tests/[\w/]+\.py(?:::\w+)?"):
        file, _, test = name.partition("::")
        if not (REPO / file).is_file():
            missing.append(f"{where}: {file}")
        elif test and not re.search(rf"^\s*(?:async )?def {test}\(", (REPO / file).read_text(), re.M):
            missing.append(f"{where}: {name}")
    assert not missing, "named tests that do not exist:\n" + "\n".join(missing)


def test_guarantees_name_their_tests() -> None:
    """Every guarantee line of the guarantees page names a test file (or folder) that holds it."""
    text = (REPO / "docs" / "reference" / "guarantees.md").read_text(encoding="utf-8")
    items = re.split(r"\n(?=- )", text.split("\n- ", 1)[1])
    bare = [item.splitlines()[0] for item in items if not re.search(r"tests/|test_\w+\.py", item)]
    assert not bare, "guarantees without a test:\n" + "\n".join(bare)


def test_named_source_paths_exist() -> None:
    """Every ``src/…`` path, ``python -m src.…`` module and entry-point script the docs name exists."""
    named = named_paths(r"(?<![\w/.~-])src/[\w/]*\w(?:\.py)?|(?<![\w/.-])(?:train|predict|extract)\.py")
    named += [(where, module.replace(".", "/")) for where, module in named_paths(r"(?<=python -m )src(?:\.\w+)+")]
    missing = [
        f"{where}: {name}"
        for where, name in named
        if not any((REPO / candidate).exists() for candidate in (name, f"{name}.py"))
    ]
    assert not missing, "named paths that do not exist:\n" + "\n".join(missing)


def github_anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"[`*_]{2,}|`", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings (outside code blocks)."""
    found, fenced = set(), False
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("```"):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            found.add(github_anchor(line.lstrip("#")))
    return found


def test_relative_links_resolve() -> None:
    """Every relative link (and image) resolves to a file; an anchor to a heading of its page."""
    broken = []
    for path in doc_files():
        text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # https:, mailto:
            file, _, anchor = target.partition("#")
            resolved = (path.parent / file).resolve() if file else path
            if not resolved.exists():
                broken.append(f"{path.relative_to(REPO)}: {target}")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                broken.append(f"{path.relative_to(REPO)}: {target} (no such heading)")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_github_anchor() -> None:
    """Anchors follow GitHub's rule (the links above depend on it)."""
    assert github_anchor(" Many processes (DDP): what holds") == "many-processes-ddp-what-holds"
    assert (
        github_anchor("Device-side transforms, `channels_last` and speed")
        == "device-side-transforms-channels_last-and-speed"
    )
    assert github_anchor("Slideflow → config mapping") == "slideflow--config-mapping"


def test_readme_is_a_front_door() -> None:
    """README.md stays short: the details live in docs/."""
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"


def test_readme_test_command_is_the_one_ci_runs() -> None:
    """The README's test command is the one CI runs (.ci/run runs the README's test command)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "python -m pytest -q\n" in readme
    assert "\npython -m pytest -q\n" in (REPO / ".ci" / "run").read_text(encoding="utf-8")
