"""Language models on the embedded corpus: magnitude, random, Wanda and SparseGPT one-shot and with a short finetune.

Every run is `progprune train dataset=text` (Python's documentation topics, char tokens) in one folder, so the dense
model is trained once and reused from the dense cache; each method then prunes it in one step (prune.epochs=0,
schedule=oneshot), evaluated without retraining and after `--finetune` epochs. Prints a markdown table per model:
test perplexity, bits per character (= bits per token for char tokens), the sparsity reached and the pruning step's
own wall time (calibration included).

    cd bench && ../.venv/bin/python lm_pruning.py              # gpt and lstm, 50%, 70% and 2:4
    cd bench && ../.venv/bin/python lm_pruning.py --models gpt --epochs 2 --finetune 1
"""

from __future__ import annotations

import argparse
import math
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch

from machine import cpu_name, load_average  # bench/machine.py (scripts run from bench/)
from strategies import run  # one `progprune train` in a shared folder (dense cache), its results or its error

METHODS = {"magnitude": ["+strategy=weight"], "random": ["+strategy=random", "strategy.granularity=weight"],
           "wanda": ["+strategy=wanda"], "sparsegpt": ["+strategy=sparsegpt"]}
MODELS = {"gpt": ["model=gpt", "model.n_layer=4", "model.n_head=4", "model.n_embd=128"],
          "lstm": ["model=lstm", "model.layers=2", "model.hidden=256"]}
# The embedding tables stay dense for every method: Wanda and SparseGPT cannot weigh them (no input columns), so
# magnitude and random leave them too, and all four prune the same weights.
EMBEDDINGS = {"gpt": "strategy.exclude=[tok,pos]", "lstm": "strategy.exclude=[embedding]"}


def target_overrides(target: str) -> list[str]:
    """`0.5` → sparsity 50% per layer; `2:4` → the N:M pattern (50%)."""
    return [f"strategy.pattern='{target}'"] if ":" in target else [f"strategy.sparsity={target}"]


def cells(results: dict[str, Any] | str, model: str) -> list[str]:
    """test perplexity and bits per character of `model` in a run, or the run's error."""
    if isinstance(results, str):
        return [f"failed: {results}", ""]
    record = results["models"][model]
    return [f"{record['perplexity']['test']:.2f}", f"{record['loss']['test'] / math.log(2):.3f}"]


def step_seconds(results: dict[str, Any] | str) -> str:
    if isinstance(results, str) or results.get("pruning") is None:
        return "—"
    return f"{sum(step.get('seconds') or 0.0 for step in results['pruning']['steps']):.3f}"


def sparsity(results: dict[str, Any] | str) -> str:
    return "—" if isinstance(results, str) else f"{results['models']['pruned']['params']['sparsity']:.1%}"


def table(root: Path, name: str, args: argparse.Namespace) -> None:
    common = ["dataset=text", f"dataset.block_size={args.block}", *MODELS[name], f"train.epochs={args.epochs}",
              "schedule=oneshot", "prune.epochs=0", "evaluate.dense_baseline=false", "evaluate.repeats=3",
              "evaluate.min_repeats=1", "evaluate.train_samples=256", f"seed={args.seed}", *args.overrides]
    print(f"\n## {name}: {' '.join(MODELS[name])}, block {args.block}, {args.epochs} dense epochs\n")
    print(f"| method | target | sparsity (whole model) | step s | one-shot test ppl | bits/char | "
          f"+{args.finetune} ep finetune test ppl | bits/char |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    dense = None
    for target in args.targets:
        for method, extra in METHODS.items():
            label = f"{name}_{method}_{target.replace(':', 'of')}"
            method_args = [*extra, EMBEDDINGS[name], *target_overrides(target)]
            oneshot = run(root, label, [*common, *method_args, "finetune.epochs=0"])
            tuned = run(root, label + "_ft", [*common, *method_args, f"finetune.epochs={args.finetune}"])
            if dense is None and not isinstance(oneshot, str):
                dense = oneshot
            print(f"| {method} | {target} | {sparsity(oneshot)} | {step_seconds(oneshot)} | "
                  + " | ".join(cells(oneshot, "pruned") + cells(tuned, "finetuned")) + " |", flush=True)
    if dense is not None:
        original = dense["models"]["original"]
        print(f"\ndense {name}: test perplexity {original['perplexity']['test']:.2f}, "
              f"{original['loss']['test'] / math.log(2):.3f} bits/char, "
              f"{original['params']['total']:,} parameters; trained {args.epochs} epochs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--targets", nargs="+", default=["0.5", "0.7", "2:4"])
    parser.add_argument("--epochs", type=int, default=4, help="dense training epochs")
    parser.add_argument("--finetune", type=int, default=1, help="finetune epochs of the second column")
    parser.add_argument("--block", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--root", type=Path, default=None, help="run folders here (default: a temporary folder)")
    parser.add_argument("overrides", nargs="*", help="extra progprune overrides for every run")
    args = parser.parse_args()
    print(f"# Language-model pruning on Python's documentation topics (char tokens)\n\nmachine: {cpu_name()}, "
          f"{torch.get_num_threads()} torch threads, load {load_average()}; python {platform.python_version()}, "
          f"torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        for name in args.models:
            table(root, name, args)
    print("\nstep s: the pruning step's own wall time (scoring and calibration passes; SparseGPT's weight update), "
          "from results.json pruning.steps[].seconds", file=sys.stdout)


if __name__ == "__main__":
    main()
