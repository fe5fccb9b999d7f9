"""Sweep summary: seed grouping as mean ± std (n), Pareto membership, files written atomically from disk."""

from __future__ import annotations

import csv
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from run_fixture import make_run  # noqa: E402

from progprune_cli.report import summary  # noqa: E402
from progprune_cli.report.summary import mean_std, pareto_front, write_sweep_summary  # noqa: E402


def sweep(root: Path, seeds: tuple[int, ...] = (0, 1, 2), unfinished: bool = True) -> Path:
    """sparsity 0.5 x seeds (accuracies 0.95, 0.96, 0.97) and sparsity 0.9 x seeds; one failed, one running."""
    job = 0
    for sp, base in ((0.5, 0.95), (0.9, 0.90)):
        for seed in seeds:
            make_run(root / str(job), overrides=[f"strategy.sparsity={sp}", f"seed={seed}"],
                     config={"strategy.sparsity": sp, "seed": seed}, sparsity=sp,
                     finetuned_acc=base + seed / 100, finetuned_median_s=0.01 if sp == 0.5 else 0.004)
            job += 1
    if unfinished:
        make_run(root / str(job), status="failed", overrides=["strategy.sparsity=0.99", "seed=0"])
        make_run(root / str(job + 1), status="running", overrides=["strategy.sparsity=0.99", "seed=1"])
    return root


@pytest.fixture
def no_png(monkeypatch):
    # Drawing is checked once below; elsewhere it only costs time.
    monkeypatch.setattr(summary, "draw_pareto", lambda rows, path: path.write_bytes(b"png"))


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_pareto_front_on_hand_made_points():
    points = [(0.9, 0.5), (0.8, 0.9), (0.85, 0.5), (0.8, 0.9), None, (0.7, 0.95), (0.6, 0.6)]
    # (0.85, 0.5) loses to (0.9, 0.5); the two equal points do not dominate each other; (0.6, 0.6) loses to all.
    assert pareto_front(points) == [True, True, False, True, False, True, False]
    latency = [(0.9, 0.010), (0.9, 0.012), (0.8, 0.004), (0.7, 0.004), (0.95, 0.02)]
    assert pareto_front(latency, maximize=(True, False)) == [True, False, True, False, True]
    assert pareto_front([]) == []


def test_mean_std_uses_sample_std():
    assert mean_std("test_acc", [0.94, 0.95, 0.96]) == "0.9500 ± 0.0100 (3)"
    assert mean_std("test_acc_vs_orig", [-0.02, 0.0]) == "-0.0100 ± 0.0141 (2)"
    assert mean_std("test_acc", [0.9]) == "0.9000 (1)"
    assert mean_std("test_acc", []) is None


def test_summary_rows_seed_groups_and_fronts(tmp_path, no_png):
    root = sweep(tmp_path / "multirun")
    assert write_sweep_summary(root) == root / "summary.md"
    rows = read_csv(root / "summary.csv")
    assert [(r["job"], r["strategy.sparsity"], r["seed"], r["status"]) for r in rows] == [
        ("0", "0.5", "0", "complete"), ("1", "0.5", "1", "complete"), ("2", "0.5", "2", "complete"),
        ("3", "0.9", "0", "complete"), ("4", "0.9", "1", "complete"), ("5", "0.9", "2", "complete"),
        ("6", "0.99", "0", "failed"), ("7", "0.99", "1", "running")]
    assert [r["test_acc"] for r in rows] == ["0.94", "0.95", "0.96", "0.89", "0.9", "0.91", "", ""]
    assert rows[0]["test_acc_vs_long"] == "-0.015" and rows[6]["error"] == "boom"
    # Job 2 is the most accurate; job 5 is the best of the sparser, faster runs; neither dominates the other.
    assert [r["pareto_sparsity"] for r in rows] == ["false", "false", "true", "false", "false", "true", "", ""]
    assert [r["pareto_latency"] for r in rows] == ["false", "false", "true", "false", "false", "true", "", ""]
    text = (root / "summary.md").read_text()
    assert "8 jobs: 6 complete, 1 failed, 1 running." in text
    grouped = text.split("## Seeds grouped: mean ± std (n)\n\n")[1].split("\n\n")[0].splitlines()
    assert grouped[0] == ("| strategy.sparsity | jobs | test_acc | test_acc_vs_orig | test_acc_vs_long | "
                          "sparsity | runtime_median_s |")
    assert grouped[2:] == [
        "| 0.5 | 0, 1, 2 | 0.9500 ± 0.0100 (3) | +0.0000 ± 0.0100 (3) | -0.0050 ± 0.0100 (3) "
        "| 0.5000 ± 0.0000 (3) | 0.01 ± 0 (3) |",
        "| 0.9 | 3, 4, 5 | 0.9000 ± 0.0100 (3) | -0.0500 ± 0.0100 (3) | -0.0550 ± 0.0100 (3) "
        "| 0.9000 ± 0.0000 (3) | 0.004 ± 0 (3) |",
        "| 0.99 | 6, 7 | - | - | - | - | - |"]
    assert "![Pareto fronts](pareto.png)" in text


def test_no_seed_table_without_seed_repeats(tmp_path, no_png):
    root = sweep(tmp_path / "multirun", seeds=(0,), unfinished=False)
    text = write_sweep_summary(root).read_text()
    assert "## Jobs" in text and "Seeds grouped" not in text


def test_summary_of_a_sweep_still_starting(tmp_path, no_png):
    root = tmp_path / "multirun"
    make_run(root / "0", status="running", overrides=["seed=0"])
    (root / "1").mkdir()  # Hydra made the folder, nothing else yet: not a run folder
    write_sweep_summary(root)
    assert [(r["job"], r["status"], r["pareto_sparsity"]) for r in read_csv(root / "summary.csv")] == [
        ("0", "running", "")]


def test_concurrent_writers_leave_whole_files_and_no_temp_files(tmp_path, no_png):
    root = sweep(tmp_path / "multirun", seeds=(0, 1))
    threads = [threading.Thread(target=write_sweep_summary, args=(root,)) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(p.name for p in root.iterdir() if p.is_file()) == [
        ".summary.lock", "pareto.png", "summary.csv", "summary.md"]
    assert len(read_csv(root / "summary.csv")) == 6
    assert (root / "summary.md").read_text().endswith("![Pareto fronts](pareto.png)\n")


def test_pareto_png_is_drawn_atomically(tmp_path):
    root = sweep(tmp_path / "multirun", seeds=(0,))
    write_sweep_summary(root)
    assert (root / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p.name for p in root.iterdir() if p.name.endswith(".tmp")]


def test_compare_summary_flag_prints_and_writes(tmp_path, capsys, no_png):
    from progprune_cli.report.compare_cli import main

    root = sweep(tmp_path / "multirun", seeds=(0,))
    assert main([str(root), "--summary"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# Sweep multirun\n")
    assert out.endswith(f"wrote {root / 'summary.md'}, {root / 'summary.csv'}, {root / 'pareto.png'}\n")
