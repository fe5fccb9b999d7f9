"""Times `progprune --help` and the default experiment (`make run`'s command) on this machine; prints markdown."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machine import cpu_name  # bench/machine.py (scripts run from bench/)

PROGPRUNE = str(Path(sys.executable).parent / "progprune")


def wall(args: list[str], cwd: str) -> float:
    start = time.perf_counter()
    subprocess.run(args, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main(help_repeats: int = 10, run_repeats: int = 3) -> None:
    with tempfile.TemporaryDirectory() as cwd:
        helps = [wall([PROGPRUNE, "--help"], cwd) for _ in range(help_repeats)]
        # train.reuse=false: every repeat trains the dense model itself, as on a fresh machine.
        runs = [wall([PROGPRUNE, "train", "+strategy=weight", "train.reuse=false"], cwd) for _ in range(run_repeats)]
    load = os.getloadavg()
    print(f"- machine: {cpu_name()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}, load average before/after {load[2]:.2f}/{load[0]:.2f}")
    print("- each figure: wall time of the whole process (startup included), median (min–max) of the repeats\n")
    print("| command | repeats | median s | min–max s |")
    print("|---|---|---|---|")
    for name, times in (("progprune --help", helps), ("progprune train +strategy=weight", runs)):
        print(f"| `{name}` | {len(times)} | {statistics.median(times):.2f} | {min(times):.2f}–{max(times):.2f} |")


if __name__ == "__main__":
    main()
