"""Torchvision architectures with half their channels pruned (structured, compacted with torch-pruning) vs dense: the
theoretical MAC ratio next to the speedup measured in PyTorch and in onnxruntime (CPU, 1 thread, timed in turns)."""

from __future__ import annotations

import argparse
import sys
import tempfile
from importlib import resources
from pathlib import Path

import torch
import torchvision
import yaml
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from the repo root or bench/, installed or not

import progprune_cli.catalog  # noqa: E402,F401  (the strategies' schemas)
from machine import cpu_name, load_average  # noqa: E402  (bench/machine.py)
from progprune_cli.config.load import load_component  # noqa: E402
from progprune_cli.data import DataInfo  # noqa: E402
from progprune_cli.measure import count_params, layer_table, macs_summary, measure_interleaved  # noqa: E402
from progprune_cli.measure.onnxruntime_backend import onnxruntime_models  # noqa: E402
from progprune_cli.pruning.strategies import PruneContext, Strategy, build_strategy  # noqa: E402


def structured(sparsity: float) -> Strategy:
    """`+strategy=structured strategy.sparsity=SPARSITY` as conf/strategy/structured.yaml gives it (keep_first and
    the L1 norm included)."""
    values = yaml.safe_load((resources.files("progprune_cli.conf") / "strategy" / "structured.yaml").read_text())
    values.pop("defaults", None)
    return build_strategy(load_component("strategy", {**values, "sparsity": sparsity}))


def pruned(arch: str, info: DataInfo, sparsity: float) -> tuple[nn.Module, nn.Module, Strategy]:
    """The dense torchvision model and its compacted copy after one structured step to `sparsity` of every unit."""
    torch.manual_seed(0)
    model = torchvision.models.get_model(arch, num_classes=info.num_classes).eval()
    strategy = structured(sparsity)
    strategy.check(model, info)  # as a run does before training: traces, finds what must stay dense
    # Filter norms need no calibration data: the context is never read.
    ctx = PruneContext([], nn.functional.cross_entropy, torch.device("cpu"), seed=0)
    masks, _ = strategy.step(model, strategy.initial_masks(model, info), sparsity, 1.0, ctx)
    return model, strategy.compact(model, masks, info).eval(), strategy


def row(arch: str, info: DataInfo, args: argparse.Namespace, folder: Path) -> str:
    dense, small, strategy = pruned(arch, info, args.sparsity)
    shape = (info.channels, info.height, info.width)
    theoretical = macs_summary(layer_table(dense, shape))["dense"] / macs_summary(layer_table(small, shape))["dense"]
    kept = count_params(small)["physical"] / count_params(dense)["physical"]
    inputs = torch.randn(args.batch, *shape, generator=torch.Generator().manual_seed(0))
    sessions, notes = onnxruntime_models({"dense": dense, "compacted": small}, inputs[:2], folder / arch, threads=1)
    for note in notes:
        print(f"  {arch}: {note}", file=sys.stderr)
    models = {"torch dense": dense, "torch compacted": small,
              **{f"onnxruntime {name}": session for name, session in sessions.items()}}
    timed = measure_interleaved(models, inputs, args.batch, args.warmup, args.repeats, 1, torch.device("cpu"))
    ms = {name: 1000 * timed[name]["median"] for name in models}

    def speedup(runtime: str) -> str:
        both = f"{runtime} dense", f"{runtime} compacted"
        return f"{ms[both[0]] / ms[both[1]]:.2f}× | {ms[both[0]]:.1f} → {ms[both[1]]:.1f}" if all(
            name in ms for name in both) else "— | not exported"

    units, dense_units = len(strategy.units(dense)), len(strategy.dense(dense))
    return (f"| {arch} @ {args.sparsity:.0%} | {units} / {dense_units} | {kept:.1%} | {theoretical:.2f}× | "
            f"{speedup('torch')} | {speedup('onnxruntime')} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--archs", nargs="+", default=["resnet18", "efficientnet_b0", "regnet_x_400mf"])
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--classes", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    info = DataInfo(channels=3, height=args.size, width=args.size, num_classes=args.classes)
    folder = Path(tempfile.mkdtemp(prefix="progprune-torchvision-speedup-"))
    print(f"machine: {cpu_name()}, torch {torch.__version__}, torchvision {torchvision.__version__}, load average "
          f"before {load_average()}")
    print(f"input: 3×{args.size}×{args.size} random images, {args.classes} classes, one batch of {args.batch} per "
          f"timed pass; torchvision models (random init, eval mode); strategy=structured (conf/strategy/structured."
          f"yaml: L1 filter norm, keep_first=true) one step to {args.sparsity:.0%} of every unit's channels, "
          "compacted with torch-pruning (outputs checked against the masked model in float64); theoretical = dense "
          "conv/linear MACs of the original / of the compacted model; measured = original median / compacted median "
          f"in the same runtime; all four models timed in turns, {args.warmup} warm-up + {args.repeats} timed "
          "passes, 1 thread (torch.set_num_threads(1); onnxruntime CPU provider, 1 intra-op thread, sequential)")
    print("\n| model @ channel sparsity | units pruned / left dense | params kept | theoretical (MACs) | "
          "PyTorch measured | PyTorch ms dense → compacted | onnxruntime measured | onnxruntime ms dense → compacted |"
          "\n|---|---:|---:|---:|---:|---:|---:|---:|")
    for arch in args.archs:
        print(row(arch, info, args, folder), flush=True)
    print(f"load average after {load_average()}")


if __name__ == "__main__":
    main()
