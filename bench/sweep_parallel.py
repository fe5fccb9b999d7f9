"""A 4-job sweep of MNIST-sized runs: one after another vs parallel jobs (joblib, submitit_local) on this machine."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_name, load_average  # bench/machine.py (scripts run from bench/)
from overhead import write_mnist

PROGPRUNE = str(Path(sys.executable).parent / "progprune")

LAUNCHERS = {
    "sequential (basic launcher)": [],
    "hydra/launcher=parallel (joblib, 2 jobs)": ["hydra/launcher=parallel"],
    "hydra/launcher=submitit_local (cpus_per_task=1)": ["hydra/launcher=submitit_local",
                                                        "hydra.launcher.cpus_per_task=1",
                                                        "hydra.launcher.timeout_min=60"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", type=int, default=7200, help="training images per job")
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="progprune-sweep-"))
    write_mnist(work / "mnist", args.train, max(args.train // 6, 100))
    seeds = ",".join(str(s) for s in range(args.jobs))
    common = ["train", "-m", "+strategy=weight", "dataset=mnist", f"dataset.root={work / 'mnist'}",
              "dataset.download=false", f"seed={seeds}", "train.epochs=4", "prune.epochs=2", "finetune.epochs=1",
              "evaluate.dense_baseline=false", "train.reuse=false"]
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, load average before {load_average()}")
    print(f"each job: +strategy=weight on {args.train} learnable MNIST-shaped images, 4+2+1 epochs, no dense baseline;"
          f" {args.jobs} jobs (seed=0..{args.jobs - 1}); train.threads=null (the cores a job may use)")
    times: dict[str, list[float]] = {name: [] for name in LAUNCHERS}
    for repeat in range(args.repeats):
        for name, extra in LAUNCHERS.items():  # interleaved, so machine drift favours none
            start = time.perf_counter()
            done = subprocess.run([PROGPRUNE, *common, *extra], cwd=work, capture_output=True, text=True)
            times[name].append(time.perf_counter() - start)
            if done.returncode != 0:
                raise SystemExit(f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    base = statistics.median(times["sequential (basic launcher)"])
    print(f"\n| launcher | wall s (median of {args.repeats}) | min–max | speedup vs sequential |\n|---|---:|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.1f} | {min(values):.1f}–{max(values):.1f} | {base / median:.2f}× |")
    print(f"load average after {load_average()}")


if __name__ == "__main__":
    main()
