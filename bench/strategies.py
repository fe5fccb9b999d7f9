"""Strategies compared on the digits data: accuracy of unstructured pruning, and the compacted model's CPU time."""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from machine import cpu_name, load_average  # bench/machine.py (scripts run from bench/)

PROGPRUNE = str(Path(sys.executable).parent / "progprune")
UNSTRUCTURED = {"weight": [], "taylor": ["strategy.granularity=weight"], "random": ["strategy.granularity=weight"]}
CHANNEL = {"structured": [], "activation": [], "random(channel)": ["strategy.granularity=channel"]}


def run(root: Path, label: str, overrides: list[str]) -> dict[str, Any] | str:
    """One `progprune train` in `root` (so every run shares the dense-model cache); its results.json or the error.
    Also used by lamp.py."""
    folder = root / label.replace("(", "_").replace(")", "").replace("=", "_").replace(" ", "_")
    command = [PROGPRUNE, "train", *overrides, f"hydra.run.dir={folder}"]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=root, capture_output=True, text=True)
    print(f"  {label}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or ["no output"])[-1]
    return json.loads((folder / "results.json").read_text())


def accuracy(results: dict[str, Any] | str, model: str) -> str:
    """`model`'s test accuracy in a run's results, `failed: <error>` for a failed run, `—` for a model it lacks."""
    if isinstance(results, str):
        return f"failed: {results}"
    return f"{results['models'][model]['accuracy']['test']:.2%}" if model in results["models"] else "—"


def runtime(record: dict[str, Any]) -> str:
    r = record["latency"]["eval_runtime_s"]
    return f"{r['median'] * 1000:.2f} [{r['p10'] * 1000:.2f}–{r['p90'] * 1000:.2f}]"


def unstructured_table(root: Path, args: argparse.Namespace) -> None:
    print("\n## Unstructured (mask-only): test accuracy after pruning + finetune\n")
    print("| sparsity | " + " | ".join(UNSTRUCTURED) + " | dense (original) | dense, same epochs |")
    print("|---:|" + "---:|" * (len(UNSTRUCTURED) + 2))
    for sparsity in args.sparsities:
        cells, last = [], None
        for name, extra in UNSTRUCTURED.items():
            last = run(root, f"{name}_{sparsity}",
                       [f"+strategy={name}", f"strategy.sparsity={sparsity}", *extra, *args.overrides])
            cells.append(accuracy(last, "finetuned"))
        dense = [accuracy(last, "original"), accuracy(last, "dense_long")] if last is not None else ["—", "—"]
        print(f"| {sparsity:.0%} | " + " | ".join(cells + dense) + " |", flush=True)


def channel_table(root: Path, args: argparse.Namespace) -> None:
    sparsity = args.channel_sparsity
    print(f"\n## Channel level at {sparsity:.0%} of each pruned layer's channels: the compacted model\n")
    print("| strategy | test acc (finetuned) | test acc (compacted) | params dense → compacted | "
          "eval ms dense, median [p10–p90] | eval ms compacted | measured speedup | batch-1 ms/sample dense → "
          "compacted |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, extra in CHANNEL.items():
        base = name.split("(")[0]
        results = run(root, f"{name}_{sparsity}",
                      [f"+strategy={base}", f"strategy.sparsity={sparsity}", *extra, *args.overrides])
        if isinstance(results, str):
            print(f"| {name} | failed: {results} |||||||")
            continue
        dense, small = results["models"]["original"], results["models"]["compacted"]
        speedup = dense["latency"]["eval_runtime_s"]["median"] / small["latency"]["eval_runtime_s"]["median"]
        print(f"| {name} | {accuracy(results, 'finetuned')} | {accuracy(results, 'compacted')} | "
              f"{dense['params']['physical']:,} → {small['params']['physical']:,} | {runtime(dense)} | "
              f"{runtime(small)} | {speedup:.2f}× | {dense['latency']['batch1_ms']['median']:.3f} → "
              f"{small['latency']['batch1_ms']['median']:.3f} |", flush=True)
        args.latency = dense["latency"]
        args.config = results["config"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.8, 0.9])
    parser.add_argument("--channel-sparsity", type=float, default=0.5)
    parser.add_argument("--runs", type=Path, default=None, help="folder for the run folders (default: a temp dir)")
    parser.add_argument("overrides", nargs="*", default=["model=two_conv_cnn", "dataset=digits", "schedule=cubic"],
                        help="extra overrides for every run (default: the seed's CNN on digits, cubic schedule)")
    args = parser.parse_args()
    args.latency = args.config = None
    root = args.runs or Path(tempfile.mkdtemp(prefix="progprune-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    print("# Pruning strategies on digits (`progprune train`, default config otherwise)\n")
    print(f"- CPU: {cpu_name()}, {torch.get_num_threads()} threads available; torch {torch.__version__}, "
          f"python {platform.python_version()}, {platform.system()} {platform.release()}")
    print(f"- every run: `{' '.join(args.overrides)}`, the rest from conf/ (epochs, optimizer, seed); one run per "
          "cell, so no seed spread: digits' test split is 269 images, 1 image = 0.37 points")
    print(f"- load average (1/5/15 min) at start: {load_average()}; other work on the machine shows up as spread")
    print(f"- run folders: {root}")
    unstructured_table(root, args)
    channel_table(root, args)
    if args.config:
        c = args.config
        print(f"\nEpochs: train {c['train']['epochs']}, prune {c['prune']['epochs']} ({c['schedule']['name']} "
              f"schedule), finetune {c['finetune']['epochs']}; optimizer {c['optimizer']['name']} "
              f"lr {c['optimizer']['lr']}; seed {c['seed']}.")
    print(f"\nLoad average at the end: {load_average()}.")
    if args.latency:
        lat = args.latency
        print(f"\nTiming (from results.json): {lat['device']}, {lat['threads']} thread(s), whole test split "
              f"({lat['eval_samples']} images) at batch {lat['eval_batch_size']}, {lat['warmup']} warm-up + "
              f"{lat['repeats']} timed passes, median [p10–p90]; speedup = dense median / compacted median. "
              "Channel strategies keep the first conv and the classifier at full width (keep_first: true), so "
              "only conv2 loses channels (and fc the matching inputs).")


if __name__ == "__main__":
    main()
