"""An Optuna search of N trials against the same number of runs spent on a grid (issue 19): the best val accuracy
each finds at or under a measured latency, and each one's Pareto front of val accuracy against latency.

    cd bench && ../.venv/bin/python search_vs_grid.py --root R [OVERRIDES...]

Both prune with `+strategy=structured` (channels removed, so latency moves) over strategy.sparsity and finetune.lr;
the search samples sparsity from [0.3, 0.9] and finetune.lr log-uniformly from [1e-4, 1e-2] (NSGA-II, objectives
val_accuracy:max and latency_ms:min); the grid is 5 sparsities × 4 lrs over the same ranges. Every run reads its
figures from its own results.json as the search's objectives do (results/objectives.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from machine import cpu_name, load_average  # bench/machine.py (scripts run from bench/)
from progprune_cli.config.search import parse_objectives
from progprune_cli.results.objectives import objective_values
from progprune_cli.results.schema import Results

PROGPRUNE = str(Path(sys.executable).parent / "progprune")
OBJECTIVES = ["val_accuracy:max", "latency_ms:min"]
COMMON = ["+strategy=structured", f"search.objectives=[{','.join(OBJECTIVES)}]", "evaluate.dense_baseline=false"]
SEARCH = ["hydra/sweeper=progprune_optuna", "hydra/sweeper/sampler=nsgaii", "strategy.sparsity=interval(0.3,0.9)",
          "finetune.lr=tag(log,interval(1e-4,1e-2))"]
GRID = ["strategy.sparsity=0.3,0.45,0.6,0.75,0.9", "finetune.lr=1e-4,1e-3,3e-3,1e-2"]


def points(sweep: Path) -> list[tuple[float, float, str]]:
    """(val accuracy, latency ms, job) of every finished run of a sweep folder."""
    found = []
    for results in sorted(sweep.glob("*/results.json")):
        doc = Results.from_json(json.loads(results.read_text()))
        acc, latency = objective_values(doc, parse_objectives(OBJECTIVES))
        if acc is not None and latency is not None:
            found.append((acc, latency, results.parent.name))
    return found


def pareto(found: list[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """The points no other point beats on both (higher accuracy, lower latency), by latency."""
    return sorted((p for p in found if not any(q[0] >= p[0] and q[1] <= p[1] and q[:2] != p[:2] for q in found)),
                  key=lambda p: p[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="keep the sweep folders here")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("overrides", nargs="*", help="extra progprune overrides for every run")
    args = parser.parse_args()
    print(f"machine: {cpu_name()}, {torch.get_num_threads()} torch threads, load {load_average()}; python "
          f"{platform.python_version()}, torch {torch.__version__}; overrides: {' '.join(args.overrides) or '(none)'}")
    root = args.root or Path(tempfile.mkdtemp(prefix="progprune-search-"))
    root.mkdir(parents=True, exist_ok=True)
    sweeps = {"search": [*SEARCH, f"hydra.sweeper.n_trials={args.trials}"], "grid": GRID}
    found = {}
    for name, sweep in sweeps.items():
        started = time.perf_counter()
        done = subprocess.run([PROGPRUNE, "train", "-m", *COMMON, *sweep, *args.overrides,
                               f"hydra.sweep.dir={root / name}"], cwd=root, capture_output=True, text=True)
        found[name] = points(root / name)
        print(f"{name}: {len(found[name])} finished runs, {time.perf_counter() - started:.0f} s wall, exit "
              f"{done.returncode}" + ("" if done.returncode == 0 else f": {done.stderr.strip().splitlines()[-1:]}"))
    every = sorted({round(p[1], 4) for f in found.values() for p in f})
    budgets = [every[len(every) * q // 4] for q in (1, 2, 3)] + [every[-1]] if every else []
    print("\n| latency budget (ms per sample) | best val accuracy, search | best val accuracy, grid |")
    print("|---:|---:|---:|")
    for budget in budgets:
        best = {name: max((p[0] for p in f if p[1] <= budget), default=None) for name, f in found.items()}
        print(f"| ≤ {budget:.4f} | " + " | ".join("—" if best[n] is None else f"{best[n]:.2%}" for n in sweeps) + " |")
    for name, f in found.items():
        front = ", ".join(f"{p[0]:.2%} at {p[1]:.4f} ms (job {p[2]})" for p in pareto(f))
        print(f"\n{name} Pareto front ({len(pareto(f))} of {len(f)}): {front}")
    print(f"\nload after: {load_average()}")


if __name__ == "__main__":
    main()
