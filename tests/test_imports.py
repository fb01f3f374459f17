"""No import cycles in src/: not between packages (the layers of pyproject.toml, checked by `lint-imports`
in CI) and not between the modules of one package (checked here)."""

from __future__ import annotations

import grimp


def find_cycle(graph: grimp.ImportGraph, modules: set[str]) -> list[str] | None:
    """One import cycle among ``modules`` (a list of modules, first repeated last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module) & modules):
            if state.get(imported) == 1:
                return [*path[path.index(imported) :], imported]
            if imported not in state and (cycle := visit(imported)):
                return cycle
        path.pop()
        state[module] = 2
        return None

    for module in sorted(modules):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_no_import_cycle_between_modules_of_src() -> None:
    graph = grimp.build_graph("src")  # every import, also those inside functions; packages' __init__ too
    cycle = find_cycle(graph, set(graph.modules))
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for module in ("a", "b", "c"):
        graph.add_module(module)
    graph.add_import(importer="a", imported="b")
    graph.add_import(importer="b", imported="c")
    assert find_cycle(graph, {"a", "b", "c"}) is None
    graph.add_import(importer="c", imported="a")
    assert find_cycle(graph, {"a", "b", "c"}) == ["a", "b", "c", "a"]


def test_features_inference_and_runs_import_nothing_from_extraction() -> None:
    """File helpers come from src.infra and how a slide is cut into tiles from src.slides (tile_settings, tiling):
    bags, predictions and run folders need nothing of extraction."""
    graph = grimp.build_graph("src")
    found = {
        (importer, imported)
        for package in ("src.features", "src.inference", "src.runs")
        for importer in graph.find_descendants(package) | {package}
        for imported in graph.find_modules_directly_imported_by(importer)
        if imported.startswith("src.extraction")
    }
    assert found == set(), f"import from src.infra or src.slides instead: {sorted(found)}"
