"""Does a 2:4 Linear beat a dense one on this GPU? Times nn.Linear vs progprune's SemiStructuredLinear (torch.sparse
2:4 kernels) in fp16 at a few sizes and prints the speedups; on a CPU or a pre-Ampere GPU it says so and exits 0."""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # runnable from the repo root or bench/, installed or not

from progprune_cli.measure import measure_interleaved  # noqa: E402
from progprune_cli.measure.sparse_kernels import (  # noqa: E402
    SemiStructuredLinear, _semi_structured_class, semi_structured_unavailable)
from progprune_cli.pruning.pattern import nm_mask  # noqa: E402

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def two_four_linear(size: int, dtype: torch.dtype, device: torch.device, seed: int) -> nn.Linear:
    """A size x size Linear on `device` in `dtype` with progprune's 2:4 mask on |w| (strategy.pattern=2:4)."""
    torch.manual_seed(seed)
    layer = nn.Linear(size, size)
    with torch.no_grad():
        layer.weight.mul_(nm_mask(layer.weight.abs(), torch.ones_like(layer.weight, dtype=torch.bool), 2, 4))
    return layer.to(device, dtype).eval().requires_grad_(False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 8192])
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 2048])
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp16")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()

    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    why = semi_structured_unavailable(device)
    if why is not None:
        print("sparse24: skipped: needs an Ampere-or-newer NVIDIA GPU (CUDA compute capability 8.0+); "
              + ("this machine has no CUDA GPU" if device.type == "cpu" else why))
        return 0
    dtype = DTYPES[args.dtype]
    capability = ".".join(map(str, torch.cuda.get_device_capability(device)))
    print(f"# Dense nn.Linear vs 2:4 SemiStructuredLinear (y = x @ W^T + b), {args.dtype}, CUDA\n")
    print(f"- GPU: {torch.cuda.get_device_name(device)} (compute capability {capability}); torch {torch.__version__}, "
          f"CUDA {torch.version.cuda}, python {platform.python_version()}")
    print(f"- 2:4 backend: {_semi_structured_class().__name__} "
          f"(cuSPARSELt available: {torch.backends.cusparselt.is_available()})")
    print(f"- each cell: median of {args.repeats} timed forward calls after {args.warmup} warm-up calls, dense and 2:4 "
          "in turns, torch.inference_mode, CUDA-synchronized clock; [p10-p90] is the spread")
    print("- weights: square size x size layer, the 2 largest |w| of every 4 kept; speedup = dense median / 2:4 "
          "median; max |diff| = largest gap between the two outputs\n")
    print("| size | batch | dense ms (median [p10-p90]) | 2:4 ms (median [p10-p90]) | speedup | max abs diff |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size in args.sizes:
        dense = two_four_linear(size, dtype, device, seed=0)
        sparse = SemiStructuredLinear(dense)
        for batch in args.batches:
            x = torch.randn(batch, size, device=device, dtype=dtype)
            with torch.inference_mode():
                diff = float((sparse(x) - dense(x)).abs().max())
            timed = measure_interleaved({"dense": dense, "sparse": sparse}, x, batch, args.warmup, args.repeats, 1,
                                        device)
            d, s = ({k: timed[name][k] * 1000 for k in ("median", "p10", "p90")} for name in ("dense", "sparse"))
            print(f"| {size} | {batch} | {d['median']:.4f} [{d['p10']:.4f}-{d['p90']:.4f}] | "
                  f"{s['median']:.4f} [{s['p10']:.4f}-{s['p90']:.4f}] | {d['median'] / s['median']:.2f}× | "
                  f"{diff:.2e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
