"""The batch size of accuracy passes on a CPU: CPU seconds per sample of the evaluate stage's accuracy pass
(stages/accuracy.evaluate's forward, no gradients) at several batch sizes, for three of progprune's models."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import yaml

from machine import cpu_name, load_average  # bench/machine.py (scripts run from bench/)
from progprune_cli.allocator import keep_freed_memory
from progprune_cli.catalog import *  # noqa: F401,F403  (registers every model's schema)
from progprune_cli.config.load import load_component
from progprune_cli.data import DataInfo
from progprune_cli.models import build_model

# CPU time, not wall time: it barely moves when another process shares the cores, so the ratios hold on a busy
# machine; the thread count is fixed so both threads' time is counted alike.
CONF = Path(__file__).resolve().parent.parent / "conf"
SHAPES = {"two_conv_cnn": (1, 28), "resnet18": (3, 32), "lenet300": (1, 28)}


def per_sample_ms(model: torch.nn.Module, x: torch.Tensor, batch: int) -> float:
    start = time.process_time()
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            model(x[i:i + batch])
    return (time.process_time() - start) / len(x) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; the minimum is reported")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--malloc-defaults", action="store_true", help="leave glibc's malloc as it is (a run does "
                        "not: progprune_cli/allocator.py)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    allocator = "glibc defaults" if args.malloc_defaults else keep_freed_memory()
    print(f"# {cpu_name()}, torch {torch.__version__}, {args.threads} threads, load {load_average()}; {allocator}")
    print(f"# min over {args.rounds} interleaved rounds of CPU ms per sample, {args.samples} random inputs")
    print("| model | " + " | ".join(f"batch {b}" for b in args.batches) + " | batch 512 / batch 128 |")
    print("|---|" + "---:|" * (len(args.batches) + 1))
    for name, (channels, side) in SHAPES.items():
        info = DataInfo(channels=channels, height=side, width=side, num_classes=10,
                        classes=tuple(str(i) for i in range(10)))
        values = yaml.safe_load((CONF / "model" / f"{name}.yaml").read_text())
        values.pop("defaults", None)  # the YAML's own values, as a run composes them
        model = build_model(load_component("model", values), info).eval()
        x = torch.randn(args.samples, channels, side, side, generator=torch.Generator().manual_seed(0))
        best = {b: float("inf") for b in args.batches}
        for _ in range(args.rounds):
            for b in args.batches:
                best[b] = min(best[b], per_sample_ms(model, x, b))
        ratio = f"{best[512] / best[128]:.2f}" if 512 in best and 128 in best else "—"
        print(f"| {name} | " + " | ".join(f"{best[b]:.4f}" for b in args.batches) + f" | {ratio} |")


if __name__ == "__main__":
    main()
