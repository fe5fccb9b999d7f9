"""Magnitude pruning scopes compared: layer, global and LAMP (Lee et al. 2021) at high sparsity, on digits (and CIFAR).

    python bench/lamp.py                      # digits, 80/90/95%, the default config's epochs
    python bench/lamp.py --cifar DIR          # also a CIFAR-10 subset in ImageFolder layout (DIR/train, DIR/test)
    python bench/lamp.py --smoke              # one epoch per stage, one sparsity: checks the script, not the method
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch

from machine import cpu_name, load_average  # bench/machine.py (scripts run from bench/)
from strategies import accuracy, run  # bench/strategies.py: one `progprune train` and its accuracy cells

SCOPES = ("layer", "global", "lamp")
SMOKE = ["train.epochs=1", "prune.epochs=1", "finetune.epochs=1", "evaluate.repeats=1", "evaluate.warmup=0"]
# No dense-long baseline: it is the same for every scope, and these runs only compare masks.
COMMON = ["+strategy=weight", "evaluate.dense_baseline=false"]


def per_layer(results: dict[str, Any] | str) -> str:
    """Each pruned layer's achieved sparsity: where the scope put the cuts."""
    if isinstance(results, str):
        return "—"
    return ", ".join(f"{layer['name']} {layer['sparsity']:.0%}" for layer in results["layers"])


def table(root: Path, name: str, data: list[str], args: argparse.Namespace) -> None:
    print(f"\n## {name}: test accuracy pruned → finetuned (seed {args.seed}, one run per cell)\n")
    print("| sparsity | " + " | ".join(SCOPES) + " | dense (original) |")
    print("|---:|" + "---:|" * (len(SCOPES) + 1))
    layers: dict[tuple[float, str], str] = {}
    for sparsity in args.sparsities:
        cells, last = [], None
        for scope in SCOPES:
            last = run(root, f"{name}_{scope}_{sparsity}",
                       [*COMMON, f"strategy.sparsity={sparsity}", f"strategy.scope={scope}", f"seed={args.seed}",
                        *data, *args.overrides])
            cells.append(f"{accuracy(last, 'pruned')} → {accuracy(last, 'finetuned')}")
            layers[(sparsity, scope)] = per_layer(last)
        print(f"| {sparsity:.0%} | " + " | ".join(cells) + f" | {accuracy(last, 'original')} |", flush=True)
    print(f"\nPer-layer sparsity of the finetuned model ({name}):\n")
    print("| sparsity | scope | layers |")
    print("|---:|---|---|")
    for (sparsity, scope), text in layers.items():
        print(f"| {sparsity:.0%} | {scope} | {text} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.8, 0.9, 0.95])
    parser.add_argument("--cifar", type=Path, default=None,
                        help="a CIFAR-10 subset in ImageFolder layout (train/<class>/, test/<class>/)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="one epoch per stage and one sparsity (90%%)")
    parser.add_argument("--runs", type=Path, default=None, help="folder for the run folders (default: a temp dir)")
    parser.add_argument("overrides", nargs="*", default=["model=two_conv_cnn", "schedule=cubic"],
                        help="extra overrides for every run (default: the seed's CNN, cubic schedule)")
    args = parser.parse_args()
    if args.smoke:
        args.sparsities, args.overrides = [0.9], [*args.overrides, *SMOKE]
    root = args.runs or Path(tempfile.mkdtemp(prefix="progprune-lamp-"))
    root.mkdir(parents=True, exist_ok=True)
    print("# Magnitude pruning: layer vs global vs LAMP scope (`progprune train +strategy=weight`)\n")
    print(f"- CPU: {cpu_name()}, {torch.get_num_threads()} threads available; torch {torch.__version__}, "
          f"python {platform.python_version()}")
    print(f"- every run: `{' '.join([*COMMON, *args.overrides])}`, the rest from conf/"
          + (" (SMOKE: one epoch per stage, numbers mean nothing)" if args.smoke else ""))
    print(f"- load average (1/5/15 min) at start: {load_average()}; run folders: {root}")
    table(root, "digits", ["dataset=digits"], args)
    if args.cifar is not None:
        table(root, "cifar10-subset", ["dataset=imagefolder", f"dataset.root={args.cifar.resolve()}",
                                       "dataset.image_size=32"], args)
    print(f"\nLoad average at the end: {load_average()}.")


if __name__ == "__main__":
    main()
