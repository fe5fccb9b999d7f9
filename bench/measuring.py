"""Issue 19's case: how long a run's evaluate stage takes (run.log's "measuring took" line) for a weight-pruned
two_conv_cnn, 10 + 5 + 3 epochs on 7,200 MNIST-shaped images, no dense-as-long; two installations interleaved.

    cd bench && ../.venv/bin/python measuring.py --pairs 2 --before /other/checkout/.venv/bin/progprune
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
from overhead import write_mnist  # the same learnable MNIST-shaped IDX files

AFTER = str(Path(sys.executable).parent / "progprune")
RUN = ["train", "dataset=mnist", "+strategy=weight", "evaluate.dense_baseline=false", "train.reuse=false"]
LINE = re.compile(r"measuring took ([\d.]+) s, (\d+)% of this attempt's stages \(training ([\d.]+) s\)")


def run(progprune: str, root: Path, folder: Path) -> str:
    started = time.perf_counter()
    done = subprocess.run([progprune, *RUN, f"dataset.root={root}", f"hydra.run.dir={folder}"], cwd=root.parent,
                          capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        return f"failed: {(done.stderr.strip().splitlines() or ['no output'])[-1]}"
    found = LINE.search((folder / "run.log").read_text())
    return f"wall {wall:.1f} s; measuring {found.group(1)} s, {found.group(2)}% (training {found.group(3)} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--before", default=None, help="another installation's progprune (e.g. an older checkout)")
    args = parser.parse_args()
    print(f"# {cpu_name()}, load {load_average()}")
    sides = {"before": args.before, "after": AFTER} if args.before else {"after": AFTER}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        root.mkdir()
        write_mnist(root, 8000, 1080)  # 10% held out: 7,200 train, 800 val; 1,080 test
        for pair in range(1, args.pairs + 1):
            for side, progprune in sides.items():
                print(f"{side} {pair}: {run(progprune, root, Path(tmp) / f'{side}{pair}')}", flush=True)


if __name__ == "__main__":
    main()
