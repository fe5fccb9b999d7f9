"""`progprune compare --pivot`: exact paper tables (markdown, CSV, LaTeX) from a synthetic sweep, and bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import progprune  # noqa: E402
from run_fixture import make_run  # noqa: E402

from progprune_cli.report.compare_cli import main  # noqa: E402
from progprune_cli.report.render import latex_text  # noqa: E402

# (method, MAC target) -> the finetuned model's val accuracy per seed; its test accuracy is 0.01 lower.
ACCURACY = {("weight", 2.0): (0.95, 0.96, 0.97), ("weight", 4.0): (0.90, 0.92, 0.94),
            ("structured", 2.0): (0.93, 0.93, 0.96), ("structured", 4.0): (0.85, 0.88, 0.88)}
NOTE = ("cell: mean ± std (n=runs averaged, sample std; — for one run) over seeds of test_acc; params left = 1 − "
        "sparsity of the final model; measured speedup of the compacted (else final) model; both means over the "
        "same runs")


def run(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def budget_sweep(tmp_path: Path) -> Path:
    """2 methods x 2 MAC targets x 3 seeds (structured runs measure the target's speedup, weight ones 1x), then
    a failed job in the weight, 4x cell."""
    root = tmp_path / "sweep"
    jobs = [(name, macs, seed, acc) for (name, macs), accs in ACCURACY.items() for seed, acc in enumerate(accs)]
    for i, (name, macs, seed, acc) in enumerate(jobs):
        make_run(root / str(i), overrides=[f"+strategy={name}", f"strategy.target.macs={macs}", f"seed={seed}"],
                 config={"strategy.name": name, "strategy.target": {"macs": macs, "params": None}, "seed": seed},
                 sparsity=1 - 1 / macs, finetuned_acc=acc,
                 finetuned_median_s=0.01 / macs if name == "structured" else 0.01)
    make_run(root / "12", status="failed", overrides=["+strategy=weight", "strategy.target.macs=4.0", "seed=3"],
             config={"strategy.name": "weight", "strategy.target": {"macs": 4.0, "params": None}, "seed": 3})
    return root


def test_markdown_is_the_default_with_mean_std_params_and_speedup(tmp_path, capsys):
    code, out, err = run(capsys, budget_sweep(tmp_path), "--pivot", "strategy,target")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "## test_acc by strategy.name and strategy.target.macs",
        "",
        "| strategy.name | macs=2 | macs=4 |",
        "|---|---|---|",
        "| weight | 0.9500 ± 0.0100 (n=3); 50.0% params; 1.00× | 0.9100 ± 0.0200 (n=3); 25.0% params; 1.00× |",
        "| structured | 0.9300 ± 0.0173 (n=3); 50.0% params; 2.00× | 0.8600 ± 0.0173 (n=3); 25.0% params; 4.00× |",
        "",
        f"- {NOTE}",
        "- 1 run not averaged (no test_acc): 12 (failed)",
    ]


def test_csv_has_one_cell_per_line_at_full_precision(tmp_path, capsys):
    code, out, err = run(capsys, budget_sweep(tmp_path), "--pivot", "strategy,target", "--csv")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "strategy.name,strategy.target.macs,n,test_acc_mean,test_acc_std,params_left_mean,measured_speedup_mean,"
        "not_averaged,runs",
        "weight,2.0,3,0.9499999999999998,0.010000000000000009,0.5,1.0,0,0 1 2",
        "weight,4.0,3,0.91,0.019999999999999962,0.24995395100386808,1.0,1,3 4 5",
        "structured,2.0,3,0.93,0.017320508075688724,0.5,2.0,0,6 7 8",
        "structured,4.0,3,0.86,0.017320508075688787,0.24995395100386808,4.0,0,9 10 11",
    ]


def test_latex_is_a_booktabs_tabular_with_the_notes_below(tmp_path, capsys):
    code, out, err = run(capsys, budget_sweep(tmp_path), "--pivot", "strategy,target", "--latex")
    assert (code, err) == (0, "")
    note = latex_text(NOTE)
    assert out.splitlines() == [
        r"% test\_acc by strategy.name and strategy.target.macs",
        r"\begin{tabular}{lll}",
        r"\toprule",
        r"strategy.name & macs=2 & macs=4 \\",
        r"\midrule",
        r"weight & 0.9500 $\pm$ 0.0100 (n=3); 50.0\% params; 1.00$\times$ & "
        r"0.9100 $\pm$ 0.0200 (n=3); 25.0\% params; 1.00$\times$ \\",
        r"structured & 0.9300 $\pm$ 0.0173 (n=3); 50.0\% params; 2.00$\times$ & "
        r"0.8600 $\pm$ 0.0173 (n=3); 25.0\% params; 4.00$\times$ \\",
        r"\bottomrule",
        r"\multicolumn{3}{l}{\footnotesize " + note + r"} \\",
        r"\multicolumn{3}{l}{\footnotesize 1 run not averaged (no test\_acc): 12 (failed)} \\",
        r"\end{tabular}",
    ]
    assert r"--- for one run" in note and r"1 $-$ sparsity" in note


def test_latex_escapes_every_special_character():
    assert latex_text("a_b & 50% #1 {x} $y ~ ^ \\ ± × — – −") == (
        r"a\_b \& 50\% \#1 \{x\} \$y \textasciitilde{} \textasciicircum{} \textbackslash{} $\pm$ $\times$ --- -- $-$")


def test_without_a_target_the_columns_are_sparsities_and_one_run_has_no_std(tmp_path, capsys):
    root = tmp_path / "sweep"
    for i, (sp, seed, acc) in enumerate([(0.5, 0, 0.95), (0.5, 1, 0.97), (0.9, 0, 0.90)]):
        make_run(root / str(i), config={"strategy.sparsity": sp, "seed": seed}, sparsity=sp, finetuned_acc=acc)
    code, out, err = run(capsys, root, "--pivot", "strategy,target", "--metric", "val_acc")
    assert (code, err) == (0, "")
    assert out.splitlines()[:5] == [
        "## val_acc by strategy.name and strategy.sparsity",
        "",
        "| strategy.name | sparsity=0.5 | sparsity=0.9 |",
        "|---|---|---|",
        "| weight | 0.9600 ± 0.0141 (n=2); 50.0% params; 1.00× | 0.9000 ± — (n=1); 10.0% params; 1.00× |",
    ]


def test_budgets_of_two_kinds_are_labelled_in_the_header_and_csv(tmp_path, capsys):
    root = tmp_path / "sweep"
    make_run(root / "0", config={"strategy.target": {"macs": 2.0, "params": None}})
    make_run(root / "1", config={"strategy.target": {"macs": None, "params": 0.5}})
    code, out, _ = run(capsys, root, "--pivot", "strategy,target")
    assert code == 0 and out.splitlines()[2] == "| strategy.name | macs=2 | params=0.5 |"
    code, out, _ = run(capsys, root, "--pivot", "strategy,target", "--csv")
    assert code == 0 and [line.split(",")[:3] for line in out.splitlines()] == [
        ["strategy.name", "target", "n"], ["weight", "macs=2", "1"], ["weight", "params=0.5", "1"]]


def test_a_run_without_config_or_results_is_counted_not_placed(tmp_path, capsys):
    root = tmp_path / "sweep"
    make_run(root / "0")
    (root / "1").mkdir()
    (root / "1" / "status.json").write_text('{"status": "failed", "error": "killed"}')
    code, out, _ = run(capsys, root, "--pivot", "strategy,target")
    assert code == 0
    assert out.splitlines()[2:5] == ["| strategy.name | sparsity=0.5 |", "|---|---|",
                                     "| weight | 0.9400 ± — (n=1); 50.0% params; 1.00× |"]
    assert out.splitlines()[-1] == "- 1 run not averaged (no test_acc): 1 (failed, no config)"


def test_where_filters_the_runs_before_they_are_averaged(tmp_path, capsys):
    code, out, _ = run(capsys, budget_sweep(tmp_path), "--pivot", "strategy,target", "--where", "seed<2",
                       "--where", "strategy.name==weight", "--csv")
    assert code == 0 and out.splitlines()[1:] == [
        "weight,2.0,2,0.945,0.007071067811865481,0.5,1.0,0,0 1",
        "weight,4.0,2,0.9,0.014142135623730963,0.24995395100386808,1.0,0,3 4"]


def test_runs_that_differ_beyond_the_seed_are_not_averaged_together(tmp_path, capsys):
    root = tmp_path / "sweep"
    make_run(root / "0", config={"seed": 0})
    make_run(root / "1", config={"seed": 1, "optimizer.lr": 0.01})
    code, out, err = run(capsys, root, "--pivot", "strategy,target")
    assert (code, out) == (2, "")
    assert err == ("progprune compare: error: --pivot: runs 0 and 1 share a cell but differ in optimizer.lr (0.001 vs "
                   "0.01), not only in seed; keep one with --where or pivot on that key\n")


@pytest.mark.parametrize("args, message", [
    (["--pivot", "strategy"], "--pivot 'strategy': expected ROWS,COLUMNS: two keys, e.g. strategy,target"),
    (["--pivot", "strategy,target,seed"],
     "--pivot 'strategy,target,seed': expected ROWS,COLUMNS: two keys, e.g. strategy,target"),
    (["--pivot", "strategy,"], "--pivot 'strategy,': expected ROWS,COLUMNS: two keys, e.g. strategy,target"),
    (["--pivot", "strategy,strategy.name"], "--pivot 'strategy,strategy.name': rows and columns are the same key; "
                                            "expected ROWS,COLUMNS: two keys, e.g. strategy,target"),
    (["--pivot", "strategy,budget"], "--pivot 'strategy,budget': unknown key 'budget'; use strategy, target or a "
                                     "dotted config key of the runs (e.g. strategy.sparsity, seed)"),
    (["--pivot", "strategy,target", "--metric", "accuracy"],
     "--metric 'accuracy': unknown metric; allowed: test_acc, val_acc, test_acc_vs_orig, sparsity, nonzero, physical, "
     "theoretical_speedup, measured_speedup, runtime_median_s, test_acc_vs_long, macs_effective, ort_speedup"),
    (["--metric", "val_acc"], "--metric 'val_acc': chooses --pivot's figure; add --pivot ROWS,COLUMNS"),
    (["--pivot", "strategy,target", "--sort", "test_acc"],
     "--pivot makes its own rows and columns; it takes no --diff, --sort, --baseline or --all-params (--where "
     "filters the runs)"),
    (["--pivot", "strategy,target", "--summary"],
     "--summary writes the sweep's own summary; it takes no --pivot or --metric"),
    (["--pivot", "strategy,target", "--where", "method==weight"],
     "--where 'method==weight': unknown key 'method'; use a column (run, status, test_acc, val_acc, test_acc_vs_orig, "
     "sparsity, nonzero, physical, theoretical_speedup, measured_speedup, runtime_median_s) or a dotted config key "
     "(e.g. strategy.sparsity)"),
])
def test_bad_pivot_input_is_one_line_exit_2(tmp_path, capsys, args, message):
    code, out, err = run(capsys, budget_sweep(tmp_path), *args)
    assert (code, out, err) == (2, "", f"progprune compare: error: {message}\n")
    assert not (tmp_path / "sweep" / "summary.md").exists()


def test_installed_command_prints_the_pivot_without_torch(tmp_path):
    root = budget_sweep(tmp_path)
    done = progprune("compare", str(root), "--pivot", "strategy,target", "--latex", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.splitlines()[3] == r"strategy.name & macs=2 & macs=4 \\"
    code = ("import sys; from progprune_cli.report.compare_cli import main; "
            f"rc = main([{str(root)!r}, '--pivot', 'strategy,target', '--csv']); "
            "print(rc, sorted(m for m in ('torch', 'matplotlib') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[-1] == "0 []"
