"""Where a run's evaluate stage spends its time: issue 19's case (a weight-pruned two_conv_cnn, 10 + 5 + 3 epochs on
7,200 MNIST-shaped images, no dense-as-long) run in this process, with timers around the stage's parts.

    cd bench && PYTHONPATH=CHECKOUT ../.venv/bin/python evaluate_parts.py

CHECKOUT (optional) is another checkout of progprune whose code is measured instead (e.g. a `git worktree` at an
older commit); its dependencies come from this venv. One run: a timing that the spread rule ran to 10 passes
instead of 5 shows as noise, so compare several runs before reading small differences.
"""

from __future__ import annotations

import collections
import functools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from machine import cpu_name, load_average  # bench/machine.py (scripts run from bench/)
from overhead import write_mnist  # the same learnable MNIST-shaped IDX files as measuring.py

SECONDS: dict[str, float] = {}  # by label, in the order the timers were set
CALLS: collections.Counter[str] = collections.Counter()


def timed(module: Any, name: str, label: str) -> None:
    """Replace module.name with itself timed (skipped where that checkout has no such function)."""
    original: Callable[..., Any] | None = getattr(module, name, None)
    if original is None:
        return
    SECONDS[label] = 0.0

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            SECONDS[label] += time.perf_counter() - started
            CALLS[label] += 1

    setattr(module, name, wrapper)


def main() -> None:
    import progprune_cli
    import progprune_cli.measure.latency as latency
    import progprune_cli.stages.evaluate as evaluate
    from progprune_cli.cli import main as progprune

    timed(evaluate, "evaluate_models", "evaluate stage")
    timed(evaluate, "accuracy_and_loss", "accuracy passes")
    timed(evaluate, "time_models", "timing (eval runtime + batch-1)")
    timed(latency, "per_sample_ms", "  of which batch-1 latency")
    print(f"# {cpu_name()}, load {load_average()}; progprune from {Path(progprune_cli.__file__).parent}")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        root.mkdir()
        write_mnist(root, 8000, 1080)  # 10% held out: 7,200 train, 800 val; 1,080 test
        run = Path(tmp) / "run"
        try:
            progprune(["train", "dataset=mnist", f"dataset.root={root}", "dataset.download=false", "+strategy=weight",
                       "evaluate.dense_baseline=false", "train.reuse=false", f"hydra.run.dir={run}"])
        except SystemExit as done:
            if done.code not in (0, None):
                raise
        measuring = next(line for line in (run / "run.log").read_text().splitlines() if "measuring took" in line)
        repeats = {name: (m["latency"]["repeats"], m["latency"]["batch1_repeats"])
                   for name, m in json.loads((run / "results.json").read_text())["models"].items()}
    print(f"run.log: {measuring.split('evaluate: ')[1]}")
    for label, seconds in SECONDS.items():
        print(f"{label}: {seconds:.2f} s ({CALLS[label]} calls)")
    print("timed passes (eval runtime, batch-1) per model: " + ", ".join(f"{k} {v[0]} + {v[1]}"
                                                                           for k, v in repeats.items()))


if __name__ == "__main__":
    sys.exit(main())
