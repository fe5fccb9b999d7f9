"""Wall time of an MNIST experiment preset (e.g. lenet300_mnist) at MNIST's full size, on MNIST-shaped files.

    cd bench && ../.venv/bin/python preset_time.py lenet300_mnist            # 60,000 train / 10,000 test
    cd bench && ../.venv/bin/python preset_time.py lenet5_mnist --train 6000 --test 1000

Without a network there is no MNIST on the machine, so the files are learnable MNIST-shaped IDX files
(`overhead.write_mnist`: a noisy prototype per class) of MNIST's size: the wall time is the preset's (same shapes,
epochs, batches and evaluations), the accuracies are not MNIST's and are printed only to show the run learned.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_name, load_average  # bench/machine.py (scripts run from bench/)
from overhead import write_mnist

PROGPRUNE = str(Path(sys.executable).parent / "progprune")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", help="a conf/experiment preset whose dataset is mnist")
    parser.add_argument("--train", type=int, default=60000, help="training images (MNIST has 60,000)")
    parser.add_argument("--test", type=int, default=10000, help="test images (MNIST has 10,000)")
    parser.add_argument("overrides", nargs="*", default=[], help="extra overrides for the run")
    args = parser.parse_intermixed_args()
    work = Path(tempfile.mkdtemp(prefix="progprune-preset-"))
    write_mnist(work / "mnist", args.train, args.test)
    command = [PROGPRUNE, "train", f"experiment={args.experiment}", f"dataset.root={work / 'mnist'}",
               "dataset.download=false", f"hydra.run.dir={work / 'run'}", *args.overrides]
    print(f"machine: {cpu_name()}, load average before {load_average()}")
    print(f"data: learnable MNIST-shaped IDX files, {args.train} train / {args.test} test (not MNIST: accuracies "
          "below say only that the run learned)")
    print(f"command: {' '.join(command[1:])}")
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=work)  # its dense cache goes there too
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    log = (work / "run" / "run.log").read_text()
    print(f"\nwall time: {elapsed:.1f} s ({elapsed / 60:.1f} min)")
    took: dict[str, float] = {}
    for line in log.splitlines():
        if match := re.match(r"(\w+): epoch \d+ took ([\d.]+) s", line):
            took[match[1]] = took.get(match[1], 0.0) + float(match[2])
        elif re.match(r"(train|prune|finetune|dense_long): ", line) or "measuring took" in line:
            print(f"  run.log: {line}")
    print("  epochs' time per stage (run.log): " + ", ".join(f"{k} {v:.1f} s" for k, v in took.items()))
    rows = [line.strip() for line in done.stdout.splitlines()
            if re.match(r"\W*(original|pruned|pruned\+finetuned|dense, same epochs)\W", line) and "%" in line]
    for row in rows[:4]:
        print(f"  {row}")
    print(f"load average after {load_average()}; run folder {work / 'run'}")


if __name__ == "__main__":
    main()
