"""Imports run one way (issue 16): no circle among progprune_cli's modules, function-level imports included; the
low-level pieces and the run-folder readers pull in nothing above them; no module rebinds a global of its own."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("import_graph", ROOT / "bench" / "import_graph.py")
assert _spec is not None and _spec.loader is not None
graph_tool = importlib.util.module_from_spec(_spec)
sys.modules["import_graph"] = graph_tool
_spec.loader.exec_module(graph_tool)

P = "progprune_cli."
# Errors, files, checkpoints, signals, the device, the process group and importing a user's _target_: what
# everything above may use.
LOW_LEVEL = {P + name for name in ("errors", "atomic", "filelock", "reading", "hashing", "checkpoints", "signals",
                                   "device", "distributed", "targets")}


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return graph_tool.build_graph(ROOT)


def _under(modules: set[str], *packages: str) -> list[str]:
    return sorted(m for m in modules if any(m == P + p or m.startswith(P + p + ".") for p in packages))


def test_no_circle_among_progprune_modules(graph: dict[str, set[str]]) -> None:
    assert graph_tool.circles(graph) == []


def test_low_level_modules_import_only_low_level_ones(graph: dict[str, set[str]]) -> None:
    assert LOW_LEVEL <= set(graph)
    assert {m: sorted(graph_tool.reaches(graph, m) - LOW_LEVEL) for m in sorted(LOW_LEVEL)} == \
        {m: [] for m in sorted(LOW_LEVEL)}


def test_run_folder_readers_pull_in_no_stage(graph: dict[str, set[str]]) -> None:
    """status.py is read by the CLI's pre-run check, records.py by report and compare: neither may drag in the
    stages, the parts or torch's models (records.py expands a sweep's job list with config/overrides.py)."""
    for reader in ("results.status", "results.records", "results.schema"):
        config = ["config"] if reader != "results.records" else []
        above = _under(graph_tool.reaches(graph, P + reader), "stages", "parts", "runner", "models", "data", "pruning",
                       "optim", "measure", "export", "report", "sensitivity", *config)
        assert above == [], reader


def test_measure_never_imports_export_or_the_stages(graph: dict[str, set[str]]) -> None:
    """The evaluate stage uses measure/; export/ reads finished run folders and may use measure, never the reverse."""
    for module in _under(set(graph), "measure"):
        assert _under(graph_tool.reaches(graph, module), "export", "stages", "runner") == [], module


def test_no_module_rebinds_a_global() -> None:
    """A `global` statement is module-level state set at run time: a channel no signature shows (issue 16 removed
    distributed's _CURRENT, which evaluation read when no World was passed)."""
    found = [f"{path.relative_to(ROOT)}:{node.lineno}" for path in sorted((ROOT / "progprune_cli").rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.Global)]
    assert found == []


def test_the_graph_counts_function_level_and_relative_imports(tmp_path: Path) -> None:
    """The tool on a toy package: a circle closed only inside a function is found; `from pkg import sub` inside pkg
    reaches sub (not pkg's half-loaded __init__); a relative import resolves; importing pkg.sub.x runs pkg.sub."""
    files = {
        "toy/__init__.py": "from toy import a  # a submodule: no edge back to toy itself\n",
        "toy/a.py": "from .b import thing\n",
        "toy/b.py": "thing = 1\n\ndef later():\n    from toy.c import other\n",
        "toy/c.py": "import toy.a as a\nother = 2\n",
        "toy/sub/__init__.py": "",
        "toy/sub/x.py": "",
        "toy/d.py": "from toy.sub.x import *\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    graph = graph_tool.build_graph(tmp_path, "toy")
    assert graph == {"toy": {"toy.a"}, "toy.a": {"toy.b"}, "toy.b": {"toy.c"}, "toy.c": {"toy.a"}, "toy.d":
                     {"toy.sub", "toy.sub.x"}, "toy.sub": set(), "toy.sub.x": set()}
    assert graph_tool.circles(graph) == [["toy.a", "toy.b", "toy.c"]]
    assert graph_tool.layers(graph) == {"toy.sub": 0, "toy.sub.x": 0, "toy.d": 1, "toy.a": 0, "toy.b": 0,
                                        "toy.c": 0, "toy": 1}


def test_the_config_layer_reaches_no_part_and_no_stage(graph: dict[str, set[str]]) -> None:
    """cli → config → parts → stages: the typed config finds each component's schema in Hydra's ConfigStore (the
    component registered it), so config/ never imports the components, the stages or what reads their results."""
    for module in _under(set(graph), "config"):
        assert _under(graph_tool.reaches(graph, module), "stages", "parts", "runner", "models", "data", "pruning",
                      "optim", "measure", "export", "report", "sensitivity", "results") == [], module
