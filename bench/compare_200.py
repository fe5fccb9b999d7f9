"""Time `progprune compare` over 200 fixture run folders (what a shell glob passes): median of 5 subprocess runs."""

from __future__ import annotations

import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from run_fixture import make_run  # noqa: E402

from machine import cpu_name  # bench/machine.py (scripts run from bench/)

RUNS, REPEATS = 200, 5


def make_runs(root: Path) -> list[Path]:
    """A realistic mix: sparsity x lr x seed complete jobs, plus every 20th failed and every 25th running."""
    paths = []
    for i in range(RUNS):
        sparsity, lr, seed = (0.5, 0.7, 0.8, 0.9, 0.95)[i % 5], (0.001, 0.0003)[i // 5 % 2], i // 10
        status = "failed" if i % 20 == 19 else "running" if i % 25 == 24 else "complete"
        paths.append(make_run(root / f"{i:03d}", status=status, sparsity=sparsity, finetuned_acc=0.97 - sparsity / 10,
                              overrides=[f"strategy.sparsity={sparsity}", f"optimizer.lr={lr}", f"seed={seed}"],
                              config={"strategy.sparsity": sparsity, "optimizer.lr": lr, "seed": seed}))
    return paths


def command() -> tuple[list[str], str]:
    # The top-level `progprune` script dispatches to compare_cli.main; until it exists, time the module directly.
    script = shutil.which("progprune") or str(Path(sys.executable).with_name("progprune"))
    probe = subprocess.run([sys.executable, "-c", "import progprune_cli.cli"], capture_output=True)
    if Path(script).exists() and probe.returncode == 0:
        return [script, "compare"], "progprune compare"
    return [sys.executable, "-m", "progprune_cli.report.compare_cli"], "python -m progprune_cli.report.compare_cli"




def time_it(argv: list[str]) -> list[float]:
    times = []
    for _ in range(REPEATS + 1):  # the first run warms the page cache and .pyc files; it is not counted
        start = time.perf_counter()
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv[:4])} ... failed: {done.stderr.strip()}")
    return times[1:]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_runs(Path(tmp) / "2026-11-29")
        base, label = command()
        print(f"machine: {cpu_name()}, {os.cpu_count()} cores visible, {platform.system()} {platform.release()}, "
              f"Python {platform.python_version()}")
        print(f"command: {label} <{RUNS} run folders> [format]; {REPEATS} timed subprocess runs after 1 warm-up, "
              "wall clock including interpreter start-up, output piped")
        for fmt in ([], ["--json"], ["--md"]):
            times = time_it(base + [str(p) for p in paths] + fmt)
            print(f"  {' '.join(fmt) or 'rich table':<10} median {statistics.median(times):.3f} s  "
                  f"(min {min(times):.3f}, max {max(times):.3f})")
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import progprune_cli.report.compare_cli"], check=True)
        print(f"  for scale: importing compare_cli alone takes {time.perf_counter() - start:.3f} s (one run)")


if __name__ == "__main__":
    main()
