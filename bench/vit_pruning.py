"""A Vision Transformer on image data: attention heads and MLP width removed, theoretical vs measured speedup of
the compacted model in PyTorch and onnxruntime.

Every run is `progprune train model=vit` in one folder, so the dense ViT is trained once and reused from the dense
cache; `+strategy=heads` removes a fraction of every attention's heads, `+strategy=structured` a fraction of every
MLP's hidden neurons (the only width a channel strategy cuts in a transformer). Each compacted model is timed beside
the original in PyTorch (eval batch and batch 1) and in onnxruntime, all on the CPU.

    cd bench && ../.venv/bin/python vit_pruning.py dataset=imagefolder dataset.root=/data/cifar10-subset
"""

from __future__ import annotations

import argparse
import platform
import tempfile
from pathlib import Path
from typing import Any

import torch

from machine import cpu_name, load_average  # bench/machine.py (scripts run from bench/)
from strategies import run  # one `progprune train` in a shared folder (dense cache), its results or its error

METHODS = {"heads": ["+strategy=heads"], "mlp width": ["+strategy=structured"]}


def row(method: str, sparsity: float, results: dict[str, Any] | str) -> str:
    if isinstance(results, str):
        return f"| {method} | {sparsity:.0%} | failed: {results} |" + " |" * 8
    models = results["models"]
    original, final = models["original"], models.get("compacted", models["finetuned"])
    ort = (final.get("backends") or {}).get("onnxruntime")
    b1 = original["latency"]["batch1_ms"]["median"] / final["latency"]["batch1_ms"]["median"]
    return (f"| {method} | {sparsity:.0%} | {original['accuracy']['test']:.2%} | "
            f"{models['finetuned']['accuracy']['test']:.2%} | {original['params']['total']:,} → "
            f"{final['params']['physical']:,} | {final['macs']['theoretical_speedup']:.2f}× | "
            f"{final['latency']['measured_speedup']:.2f}× | {b1:.2f}× | "
            + (f"{ort['measured_speedup']:.2f}× |" if ort and ort.get("measured_speedup") else "— |"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.25, 0.5])
    parser.add_argument("--epochs", type=int, nargs=3, default=[4, 2, 1], metavar=("TRAIN", "PRUNE", "FINETUNE"))
    parser.add_argument("--root", type=Path, default=None, help="run folders here (default: a temporary folder)")
    parser.add_argument("overrides", nargs="*", help="extra progprune overrides for every run (the data)")
    args = parser.parse_args()
    train, prune, finetune = args.epochs
    common = ["model=vit", f"train.epochs={train}", f"prune.epochs={prune}", f"finetune.epochs={finetune}",
              "evaluate.dense_baseline=false", "evaluate.backends=[torch,onnxruntime]", "evaluate.repeats=20",
              *args.overrides]
    print(f"# ViT: heads and MLP width removed\n\nmachine: {cpu_name()}, {torch.get_num_threads()} torch threads, "
          f"load {load_average()}; python {platform.python_version()}, torch {torch.__version__}; "
          f"{train} + {prune} + {finetune} epochs; {' '.join(args.overrides) or 'the default dataset'}\n")
    print("| removed | fraction | test acc original | test acc pruned + finetuned | params original → compacted | "
          "theoretical speedup (MACs) | measured, PyTorch eval batch | PyTorch batch 1 | onnxruntime |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        for method, extra in METHODS.items():
            for sparsity in args.sparsities:
                label = f"{method.replace(' ', '_')}_{sparsity:g}"
                print(row(method, sparsity, run(root, label, [*common, *extra, f"strategy.sparsity={sparsity}"])),
                      flush=True)
    print("\nmeasured speedup: the original's median time / the compacted model's, timed in turns on 1 thread "
          "(results.json latency.measured_speedup; onnxruntime: backends.onnxruntime)")


if __name__ == "__main__":
    main()
