"""How many untimed passes the timing needs: each of the first timed passes of fresh models, with no warm-up at all,
as a multiple of the median of the later ones (measure_interleaved, the Speed table's timing: 1 thread, in turns)."""

from __future__ import annotations

import argparse
import statistics

import torch
import yaml

from eval_batch import CONF, SHAPES  # bench/eval_batch.py: the same three models and input shapes
from machine import cpu_name, load_average  # bench/machine.py (scripts run from bench/)
from progprune_cli.catalog import *  # noqa: F401,F403  (registers every model's schema)
from progprune_cli.config.load import load_component
from progprune_cli.data import DataInfo
from progprune_cli.measure.latency import measure_interleaved
from progprune_cli.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=12)
    parser.add_argument("--trials", type=int, default=3, help="fresh models per model kind")
    parser.add_argument("--first", type=int, default=3, help="first passes shown")
    args = parser.parse_args()
    print(f"# {cpu_name()}, torch {torch.__version__}, load {load_average()}")
    print(f"# pass k / median of passes {args.first + 1}..{args.passes}, no warm-up; 3 fresh models timed in turns, "
          f"{args.trials} trials; eval batch: 256 inputs at batch 256, batch 1: 64 inputs one at a time")
    print("| model | timing | " + " | ".join(f"pass {k + 1}" for k in range(args.first)) + " |")
    print("|---|---|" + "---:|" * args.first)
    for name, (channels, side) in SHAPES.items():
        info = DataInfo(channels=channels, height=side, width=side, num_classes=10,
                        classes=tuple(str(i) for i in range(10)))
        values = yaml.safe_load((CONF / "model" / f"{name}.yaml").read_text())
        values.pop("defaults", None)
        x = torch.randn(256, channels, side, side, generator=torch.Generator().manual_seed(0))
        for label, inputs, batch in (("eval batch", x, 256), ("batch 1", x[:64], 1)):
            ratios: list[list[float]] = [[] for _ in range(args.first)]
            for _ in range(args.trials):
                models = {str(i): build_model(load_component("model", values), info).eval() for i in range(3)}
                timed = measure_interleaved(models, inputs, batch, 0, args.passes, 1, torch.device("cpu"))
                for result in timed.values():
                    samples = result["samples"]
                    rest = statistics.median(samples[args.first:])
                    for k in range(args.first):
                        ratios[k].append(samples[k] / rest)
            cells = [f"{min(r):.2f}–{max(r):.2f}" for r in ratios]
            print(f"| {name} | {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
