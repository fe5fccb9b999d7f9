"""experiment=methods_at_budgets: four channel-pruning methods at 2× and 4× fewer MACs, 3 seeds, Scratch beside them.

Three sweeps (`strategy.granularity=channel` is a key only taylor and random have), then one pivot table
per figure: test accuracy, the theoretical MAC speedup each budget gave, and the measured speedup of the compacted
model (how far measured falls from theoretical). Wall time of each sweep is printed.

    cd bench && ../.venv/bin/python methods_at_budgets.py                     # digits, the preset's defaults
    cd bench && ../.venv/bin/python methods_at_budgets.py dataset=imagefolder dataset.root=/data/cifar10-subset
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from machine import cpu_name, load_average  # bench/machine.py (scripts run from bench/)

PROGPRUNE = str(Path(sys.executable).parent / "progprune")
# Hydra cannot set strategy.granularity while the strategy itself is swept: taylor and random sweep alone.
SWEEPS = {"a": ["+strategy=structured,activation"], "b": ["+strategy=taylor", "strategy.granularity=channel"],
          "c": ["+strategy=random", "strategy.granularity=channel"]}
METRICS = {"test_acc": "test accuracy of the finetuned model",
           "theoretical_speedup": "theoretical MAC speedup (dense MACs / compacted MACs)",
           "measured_speedup": "measured speedup of the compacted model (PyTorch, eval batch, CPU)"}


def scratch_table(folders: list[Path]) -> str:
    """Finetuned vs Scratch (the compacted architecture trained from random init as long) per method and budget:
    mean test accuracy over the seeds, read from each job's results.json."""
    cells: dict[tuple[str, float], dict[str, list[float]]] = {}
    for results in sorted(p for folder in folders for p in folder.glob("*/results.json")):
        doc = json.loads(results.read_text())
        key = (doc["config"]["strategy"]["name"], doc["config"]["strategy"]["target"]["macs"])
        for model in ("finetuned", "scratch"):
            if model in doc["models"]:
                cells.setdefault(key, {}).setdefault(model, []).append(doc["models"][model]["accuracy"]["test"])
    lines = ["\n### pruned + finetuned vs Scratch (test accuracy, mean over seeds)\n",
             "| method | MAC target | pruned + finetuned | scratch | runs |", "|---|---:|---:|---:|---:|"]
    for (name, macs), models in cells.items():
        fin, scratch = models.get("finetuned", []), models.get("scratch", [])
        mean = (lambda xs: f"{statistics.mean(xs):.2%}" if xs else "—")
        lines.append(f"| {name} | {macs:g}× | {mean(fin)} | {mean(scratch)} | {len(fin)} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="sweep folders here (default: a temporary folder)")
    parser.add_argument("overrides", nargs="*", help="extra progprune overrides for every job")
    args = parser.parse_args()
    print(f"# experiment=methods_at_budgets\n\nmachine: {cpu_name()}, {torch.get_num_threads()} torch threads, load "
          f"{load_average()}; python {platform.python_version()}, torch {torch.__version__}; overrides: "
          f"{' '.join(args.overrides) or '(the preset)'}\n")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        folders = []
        for name, methods in SWEEPS.items():
            folder = root / name
            started = time.perf_counter()
            done = subprocess.run([PROGPRUNE, "train", "-m", "experiment=methods_at_budgets", *methods,
                                   *args.overrides, f"hydra.sweep.dir={folder}"], cwd=root, capture_output=True,
                                  text=True)
            print(f"sweep {' '.join(methods)}: {time.perf_counter() - started:.0f} s wall, exit {done.returncode}")
            if done.returncode != 0:
                print(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no output")
            folders.append(str(folder))
        print(scratch_table([Path(f) for f in folders]))
        for metric, what in METRICS.items():
            table = subprocess.run([PROGPRUNE, "compare", *folders, "--pivot", "strategy,target", "--metric", metric],
                                   capture_output=True, text=True)
            print(f"\n### {what}\n\n{table.stdout.strip() or table.stderr.strip()}")


if __name__ == "__main__":
    main()
