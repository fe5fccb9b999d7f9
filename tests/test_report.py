"""`progprune report` and its pieces (tables, markdown, rich console, plots) on fake run folders."""

from __future__ import annotations

import ast
import io
import json
import shutil
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

sys.path.insert(0, str(Path(__file__).parent))  # tests/conftest.py belongs to someone else

from run_fixture import make_run, model_entry  # noqa: E402

import progprune_cli  # noqa: E402
from progprune_cli.report import tables  # noqa: E402
from progprune_cli.report.console import print_summary  # noqa: E402
from progprune_cli.report.markdown import render_markdown  # noqa: E402
from progprune_cli.report.plots import draw_plots  # noqa: E402
from progprune_cli.report.report_cli import main  # noqa: E402
from progprune_cli.results.schema import Results  # noqa: E402

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MASK = "mask-only: no kernel uses the zeros"


def raw(run: Path) -> dict[str, Any]:
    return json.loads((run / "results.json").read_text())


def load(run: Path) -> Results:
    return Results.from_json(raw(run))


def rewrite(run: Path, results: dict[str, Any]) -> None:
    (run / "results.json").write_text(json.dumps(results))


@pytest.fixture
def run(tmp_path: Path) -> Path:
    return make_run(tmp_path / "20-00-00_weight_0")


@pytest.fixture
def dense(tmp_path: Path) -> Path:
    """A dense run: no strategy, so the runner writes only the original model and no pruning record."""
    path = make_run(tmp_path / "20-00-00_dense_0")
    results = raw(path)
    results["pruning"] = None
    results["models"] = {"original": results["models"]["original"]}
    rewrite(path, results)
    return path


def test_accuracy_rows_and_honest_recovery_footnote(run: Path) -> None:
    table = tables.accuracy_table(load(run))
    assert table.rows == [
        ["original", "98.0%", "96.0%", "95.0%", "0.25", "—"],
        ["pruned", "92.0%", "90.0%", "89.0%", "0.25", "-6.0"],
        ["pruned+finetuned", "97.0%", "95.0%", "94.0%", "0.25", "-1.0"],
        ["dense, same epochs", "98.5%", "96.5%", "95.5%", "0.25", "+0.5"],
    ]
    assert table.footnotes[0].startswith("finetune vs a dense model trained as long: -1.5 points")


def test_speed_rows_label_theoretical_and_mask_only(run: Path) -> None:
    table = tables.speed_table(load(run))
    assert "MAC speedup (theoretical)" in table.headers
    assert table.rows[0] == ["original", "0.01 (0.009–0.011)", "0.2 (0.18–0.22)", "27,000", "1.00×", "1.00×", ""]
    assert table.rows[2] == ["pruned+finetuned", "0.01 (0.009–0.011)", "0.2 (0.18–0.22)", "27,000", "1.00×",
                             "2.00×", MASK]
    assert table.rows[3][-1] == ""  # dense: theoretical 1.00×, nothing to explain
    assert table.footnotes[0] == ("measured on cpu, 1 thread(s), eval batch size 256 over 270 samples; "
                                  "3 warm-up + 10 timed repeats, median (p10–p90) over the repeats")


def test_params_rows(run: Path) -> None:
    rows = tables.params_table(load(run)).rows
    assert rows[0] == ["original", "10,858", "10,858", "10,858", "0.0%", "1.00×", "45.0 / 25.0 / —"]
    assert rows[1] == ["pruned", "10,858", "5,429", "10,858", "50.0%", "2.00×", "45.0 / 25.0 / —"]


def test_layers_and_steps(run: Path) -> None:
    doc = raw(run)
    doc["pruning"]["steps"][1]["removed"] = 0
    doc["pruning"]["notes"] = ["fc: capped at 1 kept weight (zero-width guard)"]
    results = Results.from_json(doc)
    assert tables.layers_table(results).rows == [
        ["conv1", "Conv2d", "32×1×3×3", "288", "144", "50.0%", "18,432", "9,216"]]
    steps = tables.steps_table(results)
    assert steps.rows == [["0", "0", "40", "25.0%", "25.0%", "2,714"],
                          ["1", "1", "80", "50.0%", "50.0%", "nothing removed"]]
    assert steps.footnotes == ["fc: capped at 1 kept weight (zero-width guard)"]


def test_extra_models_follow_the_contract_order(run: Path) -> None:
    doc = raw(run)
    models = doc["models"]
    doc["models"] = {"dense_long": models["dense_long"], "original": models["original"],
                     "sparse_kernels": model_entry("x", 0.94, 5429, 0.009),
                     "compacted": model_entry("y", 0.94, 5429, 0.005, physical=6000, mask_only=False),
                     "finetuned": models["finetuned"], "pruned": models["pruned"]}
    results = Results.from_json(doc)
    table = tables.params_table(results)
    assert [r[0] for r in table.rows] == ["original", "pruned", "pruned+finetuned", "compacted",
                                          "sparse kernels", "dense, same epochs"]
    assert table.rows[3][3] == "6,000"
    # Compacted is faster beyond the timing spread; the mask-only sparse kernels row's spread overlaps.
    assert tables.answers(results)[2] == (
        "did it get faster: no: mask-only (pruned+finetuned 1.00× measured, 2.00× theoretical); "
        "yes (compacted 2.00× measured, 2.00× theoretical); "
        "no: mask-only (sparse kernels 1.11× measured, 2.00× theoretical)")


def test_answers(run: Path, tmp_path: Path) -> None:
    assert tables.answers(load(run)) == [
        "accuracy cost of pruning: pruned+finetuned 94.0% test vs original 95.0% (-1.0 points); "
        "vs a dense model trained as long 95.5% (-1.5 points)",
        "parameters left: 5,429 of 10,858 nonzero (50.0%), 10,858 physical (zeros still stored)",
        "did it get faster: no: mask-only (pruned+finetuned 1.00× measured, 2.00× theoretical)"]
    fast = make_run(tmp_path / "fast", finetuned_median_s=0.005)
    assert tables.answers(load(fast))[2] == (
        "did it get faster: yes (pruned+finetuned 2.00× measured, 2.00× theoretical)")


def test_dense_run_shows_only_the_original(dense: Path) -> None:
    results = load(dense)
    assert [r[0] for r in tables.accuracy_table(results).rows] == ["original"]
    assert tables.steps_table(results) is None
    assert tables.answers(results) == ["dense baseline: no strategy given (add +strategy=NAME to prune)"]
    text = render_markdown(results, [])
    assert "- dense baseline: no strategy given (add +strategy=NAME to prune)" in text
    assert "strategy: none (dense baseline)" in text and "## Pruning steps" not in text


def test_markdown(run: Path) -> None:
    text = render_markdown(load(run), ["plots/progress.png"])
    assert text.startswith("# progprune run 20-00-00_weight_0\n")
    for heading in ("## Answers", "## Accuracy", "## Speed", "## Parameters", "## Per-layer", "## Pruning steps"):
        assert f"\n{heading}\n" in text
    assert "- did it get faster: no: mask-only (pruned+finetuned 1.00× measured, 2.00× theoretical)" in text
    assert "| pruned | 10,858 | 5,429 | 10,858 | 50.0% | 2.00× | 45.0 / 25.0 / — |" in text
    assert "![progress](plots/progress.png)" in text


def test_console_summary(run: Path) -> None:
    out = io.StringIO()
    print_summary(load(run), Console(file=out, width=200))
    assert "Accuracy" in out.getvalue() and MASK in out.getvalue() and "Per-layer" not in out.getvalue()
    verbose = io.StringIO()
    print_summary(load(run), Console(file=verbose, width=200), verbose=True)
    assert "Per-layer" in verbose.getvalue() and "32×1×3×3" in verbose.getvalue()


def test_draw_plots_writes_two_pngs_atomically(run: Path, tmp_path: Path) -> None:
    assert draw_plots(run) == ["plots/progress.png", "plots/layer_sparsity.png"]
    for name in ("progress.png", "layer_sparsity.png"):
        assert (run / "plots" / name).read_bytes()[:8] == PNG_SIGNATURE
    assert sorted(p.name for p in (run / "plots").iterdir()) == ["layer_sparsity.png", "progress.png"]
    (tmp_path / "empty").mkdir()
    assert draw_plots(tmp_path / "empty") == []  # no metrics.csv, no results.json: nothing to draw


def test_report_cli_complete_run(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(run)]) == 0
    assert "Accuracy" in capsys.readouterr().out
    draw_plots(run)
    assert main([str(run), "--md"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# progprune run 20-00-00_weight_0") and "![progress](plots/progress.png)" in out


@pytest.mark.parametrize("status, line", [
    ("running", "running in stage prune (updated 2026-11-29T20:01:00); results.json is written when the run completes"),
    ("failed", "failed in stage prune: boom (updated 2026-11-29T20:01:00)"),
])
def test_report_cli_unfinished_run(tmp_path: Path, capsys: pytest.CaptureFixture[str], status: str, line: str) -> None:
    path = make_run(tmp_path / "r", status=status)
    assert main([str(path)]) == 1
    assert capsys.readouterr().out == f"{path}: {line}\n"


def test_report_cli_bad_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty").mkdir()
    for bad in (tmp_path / "missing", tmp_path / "empty"):
        assert main([str(bad)]) == 2
        err = capsys.readouterr().err
        assert err == f"progprune report: error: RUN_DIR: {bad} is not a run folder (no status.json or results.json)\n"
    corrupt = make_run(tmp_path / "corrupt")
    (corrupt / "results.json").write_text("{not json")
    assert main([str(corrupt)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"progprune report: error: {corrupt / 'results.json'}: not valid JSON")
    assert err.count("\n") == 1
    wrong_type = {"schema_version": 1, "models": {"original": {"accuracy": {"test": "high"}}}}
    (corrupt / "results.json").write_text(json.dumps(wrong_type))
    assert main([str(corrupt)]) == 2
    assert capsys.readouterr().err == (f"progprune report: error: {corrupt / 'results.json'}: does not match "
                                       "schema_version 1 (models.original.accuracy.test: expected a number, "
                                       "found a string 'high')\n")
    (corrupt / "results.json").write_text(json.dumps({"schema_version": 2}))
    assert main([str(corrupt)]) == 2
    assert capsys.readouterr().err == (f"progprune report: error: {corrupt / 'results.json'}: schema_version 2, "
                                       "this progprune reads 1\n")


def test_report_works_on_a_copied_run_folder(run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    draw_plots(run)
    moved = Path(shutil.copytree(run, tmp_path / "elsewhere" / "copy"))
    shutil.rmtree(run)
    assert main([str(moved), "--md"]) == 0
    out = capsys.readouterr().out
    assert "![layer_sparsity](plots/layer_sparsity.png)" in out and str(tmp_path) not in out


def test_report_cli_imports_without_torch() -> None:
    code = ("import sys, progprune_cli.report.report_cli; "
            "assert 'torch' not in sys.modules; assert 'matplotlib' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_older_or_partial_file_shows_what_it_has(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = raw(run)
    del doc["run"]["train_threads"], doc["layers"]
    del doc["models"]["pruned"]["latency"], doc["models"]["pruned"]["size_bytes"]
    for model in doc["models"].values():
        model.get("latency", {}).pop("timing", None)
    rewrite(run, doc)
    results = load(run)
    assert tables.speed_table(results).rows[1] == ["pruned", "—", "—", "—", "—", "2.00×", MASK]
    assert tables.params_table(results).rows[1][-1] == "— / — / —"
    assert tables.layers_table(results) is None
    assert main([str(run), "--md"]) == 0
    assert "| pruned | 10,858 | 5,429 | 10,858 | 50.0% | 2.00× | — / — / — |" in capsys.readouterr().out


def test_an_unknown_model_shows_under_its_own_label_after_the_known_ones(run: Path) -> None:
    doc = raw(run)
    doc["models"] = {"quantized": model_entry("int8", 0.93, 5429, 0.004), **doc["models"]}
    rows = tables.accuracy_table(Results.from_json(doc)).rows
    assert [r[0] for r in rows] == ["original", "pruned", "pruned+finetuned", "dense, same epochs", "int8"]


def test_notes_are_shown_as_written_not_read_as_markup(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = raw(run)
    doc["pruning"]["notes"] = ["fc: capped [/b] at [bold]1[/bold] kept weight"]
    rewrite(run, doc)
    assert main([str(run), "--verbose"]) == 0
    assert "• fc: capped [/b] at [bold]1[/bold] kept weight" in capsys.readouterr().out


def test_report_modules_import_one_way() -> None:
    """No circle among report/ and sensitivity/show.py, counting imports made inside a function too."""
    package = Path(progprune_cli.__file__).parent
    modules = {".".join(p.relative_to(package.parent).with_suffix("").parts): p
               for p in [*(package / "report").glob("*.py"), package / "sensitivity" / "show.py"]}
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        named: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                named |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                named |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        graph[module] = named & set(modules)
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as error:
        pytest.fail(f"import circle: {' -> '.join(error.args[1])}")
