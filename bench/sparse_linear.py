"""Where does a CSR Linear beat a dense one on this machine? Times nn.Linear vs SparseLinear, prints a table."""

from __future__ import annotations

import argparse
import platform

import torch
from torch import nn

from progprune_cli.measure import SparseLinear, measure_latency

from machine import cpu_name  # bench/machine.py (scripts run from bench/)

CPU = torch.device("cpu")




def pruned_linear(size: int, sparsity: float, seed: int) -> nn.Linear:
    """A size x size Linear with a random unstructured mask (the pattern magnitude pruning gives)."""
    torch.manual_seed(seed)
    layer = nn.Linear(size, size)
    with torch.no_grad():
        layer.weight.mul_(torch.rand_like(layer.weight) >= sparsity)
    return layer


def time_ms(model: nn.Module, batch: int, size: int, args: argparse.Namespace) -> dict[str, float]:
    x = torch.randn(batch, size)
    result = measure_latency(model, x, batch, args.warmup, args.repeats, args.threads, CPU)
    return {key: result[key] * 1000 for key in ("median", "p10", "p90")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--sparsities", type=float, nargs="+", default=[0.5, 0.8, 0.9, 0.95, 0.99])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 256])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()

    print("# Dense nn.Linear vs CSR SparseLinear (y = x @ W^T + b), float32, CPU\n")
    print(f"- CPU: {cpu_name()}, {torch.get_num_threads()} threads available, timed with {args.threads} "
          f"(torch.set_num_threads), {torch.get_num_interop_threads()} interop threads")
    print(f"- torch {torch.__version__}, python {platform.python_version()}, MKL {torch.backends.mkl.is_available()}, "
          f"parallel backend: {torch.__config__.parallel_info().splitlines()[-1].split(':')[-1].strip()}")
    print(f"- each cell: median of {args.repeats} timed forward calls after {args.warmup} untimed warm-up calls, "
          f"torch.inference_mode, time.perf_counter; [p10-p90] is the spread")
    print("- weights: random unstructured mask, square size x size layer; speedup = dense median / CSR median\n")
    print("| size | batch | sparsity | dense ms (median [p10-p90]) | CSR ms (median [p10-p90]) | speedup |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        for batch in args.batches:
            for sparsity in args.sparsities:
                dense = pruned_linear(size, sparsity, seed=0)
                d = time_ms(dense, batch, size, args)
                s = time_ms(SparseLinear.from_linear(dense), batch, size, args)
                print(f"| {size} | {batch} | {sparsity:.2f} | {d['median']:.3f} [{d['p10']:.3f}-{d['p90']:.3f}] "
                      f"| {s['median']:.3f} [{s['p10']:.3f}-{s['p90']:.3f}] | {d['median'] / s['median']:.2f}x |",
                      flush=True)


if __name__ == "__main__":
    main()
