"""Compacted vs dense, measured in PyTorch and in onnxruntime, next to the theoretical MAC ratio (channel pruning)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from machine import cpu_name, load_average  # bench/machine.py (scripts run from bench/)

PROGPRUNE = str(Path(sys.executable).parent / "progprune")


def run(work: Path, model: str, sparsity: float, repeats: int) -> dict:
    run_dir = work / f"{model}-{sparsity}"
    # keep_first=false: simple_cnn has one conv, which the default keeps (bench/speedup.py does the same).
    command = [PROGPRUNE, "train", "+strategy=structured", f"model={model}", f"strategy.sparsity={sparsity}",
               "strategy.keep_first=false",
               "dataset=synthetic", "dataset.channels=3", "dataset.size=32", "dataset.num_classes=10",
               "dataset.samples=1024", "train.epochs=1", "prune.epochs=1", "finetune.epochs=1",
               "evaluate.dense_baseline=false", "evaluate.backends=[torch,onnxruntime]", f"evaluate.repeats={repeats}",
               "evaluate.warmup=5", "evaluate.threads=1", "evaluate.batch_size=256", "train.reuse=false",
               f"hydra.run.dir={run_dir}"]
    done = subprocess.run(command, cwd=work, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return json.loads((run_dir / "results.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", nargs="+", default=["simple_cnn", "resnet20"])
    parser.add_argument("--sparsity", nargs="+", type=float, default=[0.5, 0.75])
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="progprune-export-speedup-"))
    print(f"machine: {cpu_name()}, load average before {load_average()}")
    print("input: CIFAR-shaped synthetic data (3×32×32, 10 classes; 256 test images timed at batch 256); "
          f"structured (L1 filter) pruning, compacted with torch-pruning; evaluate.threads=1, 5 warm-up + "
          f"{args.repeats} timed passes, all models of a run timed in turns; onnxruntime: CPU provider, 1 thread, "
          "sequential execution; speedup = original median / compacted median in the same runtime")
    print("\n| model @ channel sparsity | params kept | theoretical (MACs) | PyTorch measured | onnxruntime measured "
          "| onnxruntime ms dense → compacted |\n|---|---:|---:|---:|---:|---:|")
    for model in args.models:
        for sparsity in args.sparsity:
            results = run(work, model, sparsity, args.repeats)
            original, compacted = results["models"]["original"], results["models"]["compacted"]
            ort_dense = original["backends"]["onnxruntime"]["eval_runtime_s"]["median"]
            ort_small = compacted["backends"]["onnxruntime"]["eval_runtime_s"]["median"]
            kept = compacted["params"]["physical"] / original["params"]["total"]
            print(f"| {model} @ {sparsity:.0%} | {kept:.1%} | {compacted['macs']['theoretical_speedup']:.2f}× | "
                  f"{compacted['latency']['measured_speedup']:.2f}× | {ort_dense / ort_small:.2f}× | "
                  f"{1000 * ort_dense:.1f} → {1000 * ort_small:.1f} |")
    print(f"load average after {load_average()}")


if __name__ == "__main__":
    main()
