"""Theoretical (MAC) vs measured CPU speedup and on-disk size, weight vs structured pruning of the seed CNNs."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from machine import cpu_name  # bench/machine.py (scripts run from bench/)

PROGPRUNE = str(Path(sys.executable).parent / "progprune")
# Accuracy is not the point here, so short training; timing uses many repeats on one thread.
COMMON = ["train.epochs=2", "prune.epochs=2", "finetune.epochs=1", "evaluate.dense_baseline=false",
          "evaluate.repeats=30", "evaluate.warmup=5", "evaluate.threads=1", "evaluate.batch_size=256"]
INPUTS = {"digits 1×8×8": ["dataset=digits"],
          "CIFAR-shaped 3×32×32 (synthetic)": ["dataset=synthetic", "dataset.channels=3", "dataset.size=32",
                                               "dataset.samples=2048", "dataset.num_classes=10"]}
MODELS = ["simple_cnn", "two_conv_cnn"]
STRATEGIES = {"weight": ["+strategy=weight"], "structured": ["+strategy=structured", "strategy.keep_first=false"]}


def run(root: Path, name: str, overrides: list[str]) -> dict[str, Any] | str:
    folder = root / name
    done = subprocess.run([PROGPRUNE, "train", *overrides, f"hydra.run.dir={folder}"], cwd=root,
                          capture_output=True, text=True)
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or ["no output"])[-1]
    return json.loads((folder / "results.json").read_text())


def row(label: str, results: dict[str, Any]) -> str:
    models = results["models"]
    final = models.get("compacted") or models["finetuned"]
    base = models["original"]
    theory = final["macs"]["theoretical_speedup"]
    measured = final["latency"]["measured_speedup"]
    b1 = base["latency"]["batch1_ms"]["median"] / final["latency"]["batch1_ms"]["median"]
    eval_ms = final["latency"]["eval_runtime_s"]
    size = final["size_bytes"]
    kind = "compacted" if "compacted" in models else "mask-only"
    stored = size["compacted"] if size["compacted"] else size["dense"]
    return (f"| {label} | {kind} | {final['params']['sparsity']:.0%} | {theory:.2f}× | {measured:.2f}× | "
            f"{measured / theory:.2f} | {b1:.2f}× | {eval_ms['median'] * 1000:.2f} "
            f"[{eval_ms['p10'] * 1000:.2f}–{eval_ms['p90'] * 1000:.2f}] | "
            f"{base['size_bytes']['dense'] / 1000:.1f} / {size['sparse'] / 1000:.1f} / {stored / 1000:.1f} |")


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="progprune-speedup-"))
    print(f"- machine: {cpu_name()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"load average at start {os.getloadavg()[0]:.2f}")
    print(f"- every run: `{' '.join(COMMON)}`; structured runs also prune the first layer (keep_first=false)")
    print("- theoretical = original dense MACs / effective MACs; measured = original median eval runtime / this "
          "model's (whole test split at batch 256, 1 thread, 5 warm-up + 30 timed passes); ratio = measured / "
          "theoretical; batch 1 = per-sample latency ratio at batch 1\n")
    print("| model · input · strategy @ target | form | sparsity | theoretical | measured (batch 256) | ratio | "
          "measured (batch 1) | eval ms median [p10–p90] | KB dense / sparse-encoded / stored |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for input_name, data in INPUTS.items():
        for model in MODELS:
            for strategy, extra in STRATEGIES.items():
                for sparsity in (0.5, 0.9):
                    label = f"{model} · {input_name} · {strategy} @ {sparsity:.0%}"
                    name = f"{model}_{len(data)}_{strategy}_{sparsity}"
                    results = run(root, name, [*data, f"model={model}", *extra, f"strategy.sparsity={sparsity}",
                                               *COMMON])
                    print(f"| {label} | failed: {results} |" if isinstance(results, str) else row(label, results),
                          flush=True)
    print(f"\nload average at the end {os.getloadavg()[0]:.2f}; run folders in {root}")


if __name__ == "__main__":
    main()
