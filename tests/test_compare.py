"""`progprune compare` on fixture run folders: exact cells, filters, sorting, baseline, --diff, bad input."""

from __future__ import annotations

import io
import os
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from run_fixture import make_run, model_entry  # noqa: E402

from progprune_cli.report.compare_cli import main  # noqa: E402

HEADLINE = ["test_acc", "val_acc", "test_acc_vs_orig", "sparsity", "nonzero", "physical",
            "theoretical_speedup", "measured_speedup", "runtime_median_s"]


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    a = make_run(tmp_path / "a", overrides=["strategy.sparsity=0.5"], config={"strategy.sparsity": 0.5})
    b = make_run(tmp_path / "b", overrides=["strategy.sparsity=0.9"], config={"strategy.sparsity": 0.9},
                 sparsity=0.9, finetuned_acc=0.91, finetuned_median_s=0.005)
    return a, b


def sweep(tmp_path: Path) -> Path:
    """Four complete jobs (sparsity x seed), then failed, running and broken ones."""
    root = tmp_path / "sweep"
    for i, (sp, seed, acc) in enumerate([(0.5, 0, 0.95), (0.5, 1, 0.97), (0.9, 0, 0.90), (0.9, 1, 0.92)]):
        make_run(root / str(i), overrides=[f"strategy.sparsity={sp}", f"seed={seed}"],
                 config={"strategy.sparsity": sp, "seed": seed}, sparsity=sp, finetuned_acc=acc)
    make_run(root / "4", status="failed", overrides=["strategy.sparsity=0.95", "seed=0"],
             config={"strategy.sparsity": 0.95})
    make_run(root / "5", status="running", overrides=["strategy.sparsity=0.99", "seed=0"],
             config={"strategy.sparsity": 0.99})
    return root


def rows_json(capsys: pytest.CaptureFixture[str], *args: object) -> list[dict]:
    code, out, err = run(capsys, *args, "--json")
    assert (code, err) == (0, "")
    return json.loads(out)


def test_markdown_shows_only_changed_config_and_exact_cells(tmp_path, capsys):
    two_runs(tmp_path)
    code, out, err = run(capsys, tmp_path / "a", tmp_path / "b", "--md")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "| run | status | strategy.sparsity | " + " | ".join(HEADLINE) + " |",
        "|---|---|" + "---:|" * 10,
        "| a | complete | 0.5000 | 0.9400 | 0.9500 | -0.0100 | 0.5000 | 5429 | 10858 | 2.00 | 1.00 | 0.01 |",
        "| b | complete | 0.9000 | 0.9000 | 0.9100 | -0.0500 | 0.9000 | 1086 | 10858 | 10.00 | 2.00 | 0.005 |",
    ]


def test_csv_keeps_full_precision(tmp_path, capsys):
    two_runs(tmp_path)
    code, out, _ = run(capsys, tmp_path / "a", tmp_path / "b", "--csv")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "run,status,strategy.sparsity," + ",".join(HEADLINE)
    assert lines[1] == "a,complete,0.5,0.94,0.95,-0.01,0.5,5429,10858,2.0,1.0,0.01"
    assert lines[2] == "b,complete,0.9,0.9,0.91,-0.05,0.8999815804015472,1086,10858,9.99815837937385,2.0,0.005"


def test_json_and_all_params(tmp_path, capsys):
    two_runs(tmp_path)
    rows = rows_json(capsys, tmp_path / "a", tmp_path / "b")
    assert list(rows[0]) == ["run", "status", "strategy.sparsity", *HEADLINE]
    assert rows[1]["measured_speedup"] == 2.0 and rows[1]["nonzero"] == 1086
    everything = rows_json(capsys, tmp_path / "a", tmp_path / "b", "--all-params")
    assert everything[0]["optimizer.lr"] == 0.001 and everything[0]["strategy.threshold"] is None


def test_rich_table_is_default(tmp_path, capsys):
    two_runs(tmp_path)
    code, out, _ = run(capsys, tmp_path / "a", tmp_path / "b")
    assert code == 0
    assert "strategy.sparsity" in out and "runtime_median_s" in out  # piped output is never folded
    assert any(line.split("│")[1:4] == [" a   ", " complete ", "            0.5000 "] for line in out.splitlines())


def test_sweep_folder_expands_in_natural_order_and_tolerates_broken_runs(tmp_path, capsys):
    root = sweep(tmp_path)
    for i in range(6, 11):  # job 10 must come after 9, not after 1
        make_run(root / str(i), overrides=["strategy.sparsity=0.5", f"seed={i}"], config={"seed": i})
    (root / "6" / "status.json").write_text("{half")
    (root / "6" / "results.json").unlink()
    (root / "7" / "results.json").write_text('{"schema_version": 1,')
    (root / "8" / "results.json").unlink()
    import shutil
    shutil.rmtree(root / "9" / ".hydra")
    (root / "9" / "results.json").unlink()
    (root / "9" / "status.json").write_text(json.dumps({"status": "interrupted", "stage": "prune"}))
    (root / "multirun.yaml").write_text("hydra: {}\n")
    rows = rows_json(capsys, root)
    assert [r["run"] for r in rows] == [str(i) for i in range(11)]
    got = {r["run"]: (r["status"], r["error"], r["test_acc"]) for r in rows[4:10]}
    assert got == {"4": ("failed", "boom", None), "5": ("running", None, None),
                   "6": ("unknown", "status.json: corrupt JSON (line 1)", None),
                   "7": ("corrupt", "results.json: corrupt JSON (line 1)", None),
                   "8": ("incomplete", "results.json missing", None),
                   "9": ("interrupted", ".hydra missing", None)}
    # The shell's expansion of SWEEP/* also names multirun.yaml: skipped, not an error.
    shell_glob = sorted(str(p) for p in root.iterdir())
    assert len(rows_json(capsys, *shell_glob)) == 11


def test_physical_size_and_latency_come_from_the_compacted_model(tmp_path, capsys):
    run_dir = make_run(tmp_path / "a")
    results = json.loads((run_dir / "results.json").read_text())
    results["models"]["compacted"] = model_entry("compacted", 0.95, 5429, 0.004, physical=5600, mask_only=False)
    (run_dir / "results.json").write_text(json.dumps(results))
    row = rows_json(capsys, run_dir)[0]
    assert [row[k] for k in ("test_acc", "nonzero", "physical", "measured_speedup", "runtime_median_s")] == [
        0.94, 5429, 5600, 2.5, 0.004]


def test_where_filters_are_anded_and_accept_config_keys(tmp_path, capsys):
    root = sweep(tmp_path)
    assert [r["run"] for r in rows_json(capsys, root, "--where", "sparsity>0.8")] == ["2", "3"]
    assert [r["run"] for r in rows_json(capsys, root, "--where", "strategy.sparsity>=0.9",
                                        "--where", "seed == 0")] == ["2", "4", "5"]
    assert [r["run"] for r in rows_json(capsys, root, "--where", "status!=complete")] == ["4", "5"]
    assert [r["run"] for r in rows_json(capsys, root, "--where", "test_acc==null")] == ["4", "5"]
    assert [r["run"] for r in rows_json(capsys, root, "--where", "run=='1'")] == ["1"]


def test_only_changed_is_computed_after_filtering(tmp_path, capsys):
    rows = rows_json(capsys, sweep(tmp_path), "--where", "seed==1")
    assert "seed" not in rows[0] and "strategy.sparsity" in rows[0]


@pytest.mark.parametrize("expr, message", [
    ("sparsity=0.8", "--where 'sparsity=0.8': expected KEY OP VALUE with OP one of > >= < <= == != "
                     "(e.g. 'sparsity>0.8')"),
    ("sparsity>", "--where 'sparsity>': expected KEY OP VALUE with OP one of > >= < <= == != "
                  "(e.g. 'sparsity>0.8')"),
    ("sparsty>0.8", "--where 'sparsty>0.8': unknown key 'sparsty'; use a column (run, status, "
                    + ", ".join(HEADLINE) + ") or a dotted config key (e.g. strategy.sparsity)"),
])
def test_bad_where_is_one_line_exit_2(tmp_path, capsys, expr, message):
    code, out, err = run(capsys, sweep(tmp_path), "--where", expr)
    assert (code, out, err) == (2, "", f"progprune compare: error: {message}\n")


def test_sort_ascending_descending_missing_last(tmp_path, capsys):
    root = sweep(tmp_path)
    assert [r["run"] for r in rows_json(capsys, root, "--sort", "test_acc")] == ["2", "3", "0", "1", "4", "5"]
    assert [r["run"] for r in rows_json(capsys, root, "--sort", "-test_acc")] == ["1", "0", "3", "2", "4", "5"]
    assert [r["run"] for r in rows_json(capsys, root, "--sort=-strategy.sparsity")] == ["5", "4", "2", "3", "0", "1"]


def test_unknown_sort_key_lists_columns(tmp_path, capsys):
    code, out, err = run(capsys, sweep(tmp_path), "--sort", "-acc")
    columns = ", ".join(["run", "status", "seed", "strategy.sparsity", *HEADLINE, "error"])
    assert (code, out) == (2, "")
    assert err == f"progprune compare: error: --sort '-acc': unknown key; known columns: {columns} " \
                  "(or a dotted config key)\n"


def test_baseline_adds_delta_columns(tmp_path, capsys):
    a, b = two_runs(tmp_path)
    rows = rows_json(capsys, a, b, "--baseline", a)
    assert rows[0]["test_acc_vs_base"] == 0.0
    assert {k: rows[1][k] for k in rows[1] if k.endswith("_vs_base")} == {
        "test_acc_vs_base": -0.04, "val_acc_vs_base": -0.04, "sparsity_vs_base": 0.3999815804,
        "nonzero_vs_base": -4343, "speedup_vs_base": 2.0}
    code, out, _ = run(capsys, b, "--baseline", a, "--md")  # a base outside the list becomes the first row
    assert code == 0
    assert [line.split(" | ")[0] for line in out.splitlines()[2:]] == ["| a", "| b"]
    assert out.splitlines()[3].endswith("| -0.0400 | -0.0400 | +0.4000 | -4343 | 2.00 |")


def test_baseline_by_row_label_and_errors(tmp_path, capsys):
    root = sweep(tmp_path)
    assert rows_json(capsys, root, "--baseline", "2")[3]["test_acc_vs_base"] == 0.02
    code, _, err = run(capsys, root, "--baseline", "4")
    assert (code, err) == (2, "progprune compare: error: --baseline 4: no results to compare against "
                              "(status failed)\n")
    code, _, err = run(capsys, root, "--baseline", "nope")
    assert (code, err) == (2, "progprune compare: error: --baseline nope: not a run folder or the run label "
                              "of a row\n")


def test_diff_shows_config_and_result_differences(tmp_path, capsys):
    a, b = two_runs(tmp_path)
    code, out, err = run(capsys, a, b, "--diff", "--md")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[:3] == ["| section | key | a | b | delta |", "|---|---|---|---|---|",
                         "| run | status | complete | complete | - |"]
    assert "| config | strategy.sparsity | 0.5000 | 0.9000 | +0.4000 |" in lines
    assert "| headline | test_acc | 0.9400 | 0.9000 | -0.0400 |" in lines
    assert "| headline | runtime_median_s | 0.01 | 0.005 | -0.005 |" in lines
    assert "| results | pruning.target | 0.5 | 0.9 | +0.4 |" in lines
    assert not any("run.started" in line or "optimizer.lr" in line for line in lines)


def test_diff_needs_two_runs(tmp_path, capsys):
    code, _, err = run(capsys, sweep(tmp_path), "--diff")
    assert (code, err) == (2, "progprune compare: error: --diff needs exactly two runs, got 6\n")


def test_path_that_is_not_a_run_is_an_error_even_next_to_valid_runs(tmp_path, capsys):
    a, _ = two_runs(tmp_path)
    (tmp_path / "empty").mkdir()
    for bad in [tmp_path / "missing", tmp_path / "empty", a / "results.json"]:
        code, out, err = run(capsys, a, bad)
        assert (code, out, err) == (2, "", f"progprune compare: error: {bad}: not a run or sweep folder\n")
    code, _, err = run(capsys, tmp_path / "zz*")  # a quoted glob that matches nothing
    assert (code, err) == (2, f"progprune compare: error: {tmp_path / 'zz*'}: not a run or sweep folder\n")
    assert len(rows_json(capsys, tmp_path / "[ab]")) == 2  # a quoted glob that matches


def test_argparse_errors_are_one_line(capsys):
    code, _, err = run(capsys, "x", "--md", "--csv")
    assert (code, err) == (2, "progprune compare: error: argument --csv: not allowed with argument --md\n")


def test_summary_flag_needs_a_sweep_folder(tmp_path, capsys):
    a, _ = two_runs(tmp_path)
    code, _, err = run(capsys, a, "--summary")
    assert (code, err) == (2, f"progprune compare: error: {a}: not a sweep folder "
                              "(--summary needs a folder of run folders)\n")


def test_compare_never_imports_torch_or_matplotlib(tmp_path):
    two_runs(tmp_path)
    code = ("import sys; from progprune_cli.report.compare_cli import main; "
            f"rc = main([{str(tmp_path / 'a')!r}, {str(tmp_path / 'b')!r}]); "
            "print(rc, sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "0 []"


def test_module_entry_point_exit_code(tmp_path):
    done = subprocess.run([sys.executable, "-m", "progprune_cli.report.compare_cli", str(tmp_path / "nope")],
                          capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == f"progprune compare: error: {tmp_path / 'nope'}: not a run or sweep folder\n"


# --- fitting the terminal ------------------------------------------------------------------------------------

def three_datasets(tmp_path: Path) -> list[Path]:
    """Runs of different datasets and models, in Hydra's runs/DATE/TIME_STRATEGY_ID folders; dataset.limit is
    null for mnist and cifar10 and missing for digits (its config has no such key)."""
    root = tmp_path / "runs"
    digits = make_run(root / "2026-11-29" / "20-00-00_weight_0", overrides=["+strategy=weight"])
    mnist = make_run(root / "2026-11-30" / "09-12-44_weight_1234", sparsity=0.9, finetuned_acc=0.97,
                     overrides=["+strategy=weight", "dataset=mnist", "model=mlp"],
                     config={"dataset": {"name": "mnist", "root": "data/mnist", "val_fraction": 0.1, "limit": None},
                             "model": {"name": "mlp", "hidden": [128, 64]}})
    cifar = make_run(root / "2026-11-30" / "10-01-02_channel_7", sparsity=0.7, finetuned_acc=0.81,
                     overrides=["+strategy=channel", "dataset=cifar10", "model=resnet_tiny"],
                     config={"dataset": {"name": "cifar10", "root": "data/cifar10", "val_fraction": 0.1,
                                         "augment": True, "limit": None},
                             "model": {"name": "resnet_tiny", "width": 16}, "strategy.name": "channel",
                             "optimizer.lr": 0.01, "train.epochs": 30})
    return [digits, mnist, cifar]


def render(paths: list[Path], width: int, **options: object) -> str:
    """What a terminal `width` columns wide shows (no colours, so the text can be compared)."""
    from rich.console import Console

    from progprune_cli.report.compare import compare_table
    from progprune_cli.report.runs import read_run, run_labels
    from progprune_cli.report.terminal import print_fitted

    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=True, color_system=None)
    table = compare_table([read_run(p) for p in paths], run_labels(paths), **options)  # type: ignore[arg-type]
    print_fitted(table, console)
    return out.getvalue()


ANSI = re.compile(r"\x1b\[[0-9;]*m")
TRANSPOSED_120 = [
    "one column per run: the 22 columns do not fit in 120",
    "┏━━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━━━┳━━━━━━━━━━━━━━━━━━━━┓",
    "┃                       ┃ 2026-11-29/       ┃ 2026-11-30/          ┃ 2026-11-30/        ┃",
    "┃ run                   ┃ 20-00-00_weight_0 ┃ 09-12-44_weight_1234 ┃ 10-01-02_channel_7 ┃",
    "┡━━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━━━╇━━━━━━━━━━━━━━━━━━━━┩",
    "│ status                │ complete          │ complete             │ complete           │",
    "│ dataset.name          │ digits            │ mnist                │ cifar10            │",
    "│ dataset.val_fraction  │              0.15 │                  0.1 │                0.1 │",
    "│ dataset.test_fraction │              0.15 │                    - │                  - │",
    "│ model.name            │ two_conv_cnn      │ mlp                  │ resnet_tiny        │",
    "│ optimizer.lr          │             0.001 │                0.001 │               0.01 │",
    "│ strategy.name         │ weight            │ weight               │ channel            │",
    "│ train.epochs          │                10 │                   10 │                 30 │",
    "│ dataset.root          │ -                 │ data/mnist           │ data/cifar10       │",
    "│ model.hidden          │ -                 │ [128,64]             │ -                  │",
    "│ dataset.augment       │ -                 │ -                    │ true               │",
    "│ model.width           │                 - │                    - │                 16 │",
    "│ test_acc              │            0.9400 │               0.9600 │             0.8000 │",
    "│ val_acc               │            0.9500 │               0.9700 │             0.8100 │",
    "│ test_acc_vs_orig      │           -0.0100 │              +0.0100 │            -0.1500 │",
    "│ sparsity              │            0.5000 │               0.9000 │             0.7000 │",
    "│ nonzero               │              5429 │                 1086 │               3257 │",
    "│ physical              │             10858 │                10858 │              10858 │",
    "│ theoretical_speedup   │              2.00 │                10.00 │               3.33 │",
    "│ measured_speedup      │              1.00 │                 1.00 │               1.00 │",
    "│ runtime_median_s      │              0.01 │                 0.01 │               0.01 │",
    "└───────────────────────┴───────────────────┴──────────────────────┴────────────────────┘",
]


def header_labels(text: str) -> list[str]:
    """Each column's header, its lines joined (a run label may go over two lines at its `/`)."""
    lines = text.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("┏"))
    bottom = next(i for i, line in enumerate(lines) if line.startswith("┡"))
    rows = [[cell.strip() for cell in line.split("┃")[1:-1]] for line in lines[top + 1:bottom]]
    return ["".join(parts) for parts in zip(*rows)]


def assert_readable(text: str, width: int) -> None:
    from rich.cells import cell_len

    assert "…" not in text
    assert all(cell_len(line) <= width for line in text.splitlines())


def test_runs_of_different_datasets_fit_a_120_column_terminal(tmp_path, capsys):
    paths = three_datasets(tmp_path)
    text = render(paths, 120)
    assert text.splitlines() == TRANSPOSED_120
    assert_readable(text, 120)
    differing = [c for c in rows_json(capsys, *paths)[0] if c != "run"]
    keys = [line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│")]
    assert keys == differing  # every differing key, whole, in the key column
    assert header_labels(text) == ["run", "2026-11-29/20-00-00_weight_0", "2026-11-30/09-12-44_weight_1234",
                                   "2026-11-30/10-01-02_channel_7"]


def test_compare_command_in_a_120_column_terminal(tmp_path):
    paths = three_datasets(tmp_path)
    env = {**os.environ, "COLUMNS": "120", "TTY_COMPATIBLE": "1"}  # rich: a terminal, 120 columns wide
    done = subprocess.run([sys.executable, "-m", "progprune_cli.report.compare_cli", *map(str, paths)],
                          capture_output=True, text=True, env=env, check=True)
    assert ANSI.sub("", done.stdout).splitlines() == TRANSPOSED_120


def test_a_key_missing_in_one_run_and_null_in_another_is_no_difference(tmp_path, capsys):
    digits, mnist, cifar = three_datasets(tmp_path)
    assert "dataset.limit" not in rows_json(capsys, digits, mnist, cifar)[0]
    assert rows_json(capsys, digits, mnist, cifar, "--all-params")[0]["dataset.limit"] is None
    code, out, _ = run(capsys, digits, mnist, "--diff", "--md")
    assert code == 0 and "dataset.limit" not in out
    assert "| config | dataset.root | - | data/mnist | - |" in out.splitlines()


def test_a_table_that_fits_is_shown_as_it_is(tmp_path):
    text = render(list(two_runs(tmp_path)), 200)
    assert text.splitlines()[1].split("┃")[1:5] == [" run ", " status   ", " strategy.sparsity ", " test_acc "]
    assert_readable(text, 200)


def test_many_runs_go_in_parts_and_a_long_error_wraps(tmp_path):
    root = tmp_path / "sweep"
    paths = [make_run(root / str(i), overrides=[f"seed={i}"], config={"seed": i}) for i in range(7)]
    error = "RuntimeError: CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 79.15 GiB total capacity)"
    (paths[3] / "status.json").write_text(json.dumps({"status": "failed", "stage": "prune", "error": error}))
    (paths[3] / "results.json").unlink()
    text = render(paths, 80)
    assert_readable(text, 80)
    lines = text.splitlines()
    # Run 3's column is as wide as ERROR_WIDTH, so fewer runs fit beside it.
    starts = [i for i, line in enumerate(lines) if line.startswith("run")]
    assert [lines[i].rstrip() for i in starts] == ["runs 1–3 of 7", "runs 4–5 of 7", "runs 6–7 of 7"]
    assert [header_labels("\n".join(lines[i:])) for i in starts] == [
        ["run", "0", "1", "2"], ["run", "3", "4"], ["run", "5", "6"]]
    part = lines[starts[1]:starts[2]]
    wrapped = [line.split("│")[2].strip() for line in part if line.startswith("│")
               and line.split("│")[1].strip() in ("error", "")]
    assert " ".join(wrapped) == error  # the whole message, over lines, in run 3's column


def test_diff_too_wide_for_the_terminal_wraps_its_cells(tmp_path):
    a, b = two_runs(tmp_path)
    from rich.console import Console

    from progprune_cli.report.compare import diff_table
    from progprune_cli.report.runs import read_run
    from progprune_cli.report.terminal import print_fitted

    out = io.StringIO()
    print_fitted(diff_table(read_run(a), read_run(b), "a", "b"),
               Console(file=out, width=60, force_terminal=True, color_system=None))
    assert_readable(out.getvalue(), 60)
    config = [line for line in out.getvalue().splitlines() if line.startswith("│ config")]
    assert len(config) == 1 and "0.5000" in config[0] and "0.9000" in config[0]  # values whole, keys wrap


def test_a_results_json_of_another_schema_shows_its_status_not_a_traceback(tmp_path, capsys):
    a, b = two_runs(tmp_path)
    (a / "results.json").write_text(json.dumps({"schema_version": 2, "models": {}}))
    doc = json.loads((b / "results.json").read_text())
    doc["models"]["finetuned"]["params"]["nonzero"] = "many"
    (b / "results.json").write_text(json.dumps(doc))
    rows = rows_json(capsys, a, b)
    assert [(r["run"], r["status"], r["error"], r["test_acc"]) for r in rows] == [
        ("a", "corrupt", "results.json: schema_version 2, this progprune reads 1", None),
        ("b", "corrupt", "results.json: models.finetuned.params.nonzero: expected an integer, found a string 'many'",
         None)]


def test_no_run_left_after_where_still_prints_the_header_in_a_narrow_terminal(tmp_path):
    text = render(three_datasets(tmp_path), 60, where=["sparsity>0.95"])
    assert_readable(text, 60)
    assert text.startswith("┏") and "│" not in text  # headers only (wrapped), no rows


def test_no_run_left_after_where_marks_no_markdown_column_numeric(tmp_path, capsys):
    code, out, err = run(capsys, *three_datasets(tmp_path), "--where", "sparsity>0.95", "--md")
    assert (code, err) == (0, "")
    assert out.splitlines() == ["| run | status | " + " | ".join(HEADLINE) + " |", "|" + "---|" * 11]
