"""Training-epoch throughput: progprune's in-memory batch path vs torchvision's standard per-sample DataLoader."""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import platform
import statistics
import struct
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from torch.utils.data import DataLoader
from torchvision import transforms
from torchvision.datasets import CIFAR10, MNIST

from progprune_cli.data import DATASETS, Batches

from machine import cpu_name, load_average  # bench/machine.py (scripts run from bench/)

MNIST_STATS = ((0.1307,), (0.3081,))
CIFAR_STATS = ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))


def write_mnist(root: Path, n: int, rng: np.random.Generator) -> None:
    """Random 28×28 images as the four IDX files of torchvision's layout (root/MNIST/raw)."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, count in (("train", n), ("t10k", max(n // 6, 1))):
        images = rng.integers(0, 256, (count, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, count, dtype=np.uint8)
        for kind, array, magic in (("images-idx3", images, 2051), ("labels-idx1", labels, 2049)):
            header = struct.pack(">i", magic) + struct.pack(f">{array.ndim}I", *array.shape)
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(header + array.tobytes())


def write_cifar(root: Path, n: int, rng: np.random.Generator) -> None:
    """Random 32×32 RGB images as CIFAR-10 python batches; torchvision's md5 list is pointed at them."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    sizes = [n // 5] * 4 + [n - 4 * (n // 5)] + [max(n // 5, 1)]
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name, size in zip(names, sizes):
        data = rng.integers(0, 256, (size, 3072), dtype=np.uint8)
        (folder / name).write_bytes(pickle.dumps({"data": data, "labels": rng.integers(0, 10, size).tolist()}))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(i) for i in range(10)]}))

    def md5(name: str) -> str:
        return hashlib.md5((folder / name).read_bytes()).hexdigest()

    CIFAR10.train_list = [[name, md5(name)] for name in names[:5]]
    CIFAR10.test_list = [["test_batch", md5("test_batch")]]
    CIFAR10.meta = {**CIFAR10.meta, "md5": md5("batches.meta")}


def samples_per_s(epoch: Callable[[int], Iterable[tuple[torch.Tensor, torch.Tensor]]], warmup: int,
                  repeats: int, device: torch.device) -> tuple[list[float], int]:
    """Samples/s of whole passes (a new shuffle seed each, as the training loop does), every batch on `device`;
    warm-up passes untimed."""
    rates, count = [], 0
    for e in range(warmup + repeats):
        started, count = time.perf_counter(), 0
        for x, y in epoch(e):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)  # no-op for progprune's
            count += len(y)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # GPU work queued in the pass belongs to it
        if e >= warmup:
            rates.append(count / (time.perf_counter() - started))
    return rates, count


def spread(rates: list[float]) -> tuple[float, float, float]:
    ordered = sorted(rates)
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return statistics.median(rates), pick(0.1), pick(0.9)


def torchvision_epochs(dataset: Any, batch_size: int, workers: int) -> Callable[[int], Iterable[Any]]:
    """The textbook loop: a torchvision dataset with a per-sample transform, collated by a DataLoader."""

    def epoch(e: int) -> Iterable[Any]:
        return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                          generator=torch.Generator().manual_seed(e))

    return epoch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--samples", type=int, default=50_000, help="training images per dataset (real sets: "
                        "60,000 MNIST, 50,000 CIFAR-10)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch.set_num_threads")
    parser.add_argument("--device", default="cpu", help="where batches end up (cpu, cuda)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script runs, numbers mean little")
    args = parser.parse_args()
    if args.smoke:
        args.samples, args.warmup, args.repeats = 2_000, 1, 3
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    print("# Data path: samples/s of one shuffled training pass\n")
    print(f"- machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__} (timed with "
          f"{torch.get_num_threads()} threads), torchvision {torchvision.__version__}, python "
          f"{platform.python_version()}, load average {load_average()}")
    print(f"- data: SYNTHETIC random uint8 images of the real shapes ({args.samples:,} train images each), written "
          "in the real file formats (IDX; CIFAR-10 python batches) and read by torchvision's MNIST / CIFAR10 classes "
          "and by progprune's mnist / cifar10 datasets")
    print(f"- each figure: median [p10–p90] of {args.repeats} passes after {args.warmup} untimed warm-up passes, "
          f"batch {args.batch_size}, batches moved to {device}, iterating the batches only (no model); a DataLoader's "
          "worker start-up is inside its pass, as in a training epoch")
    print("- torchvision: `DataLoader(dataset, shuffle=True, num_workers=N)` over the dataset with its per-sample "
          "transform (MNIST: ToTensor + Normalize; CIFAR-10: RandomCrop(32, padding=4) + RandomHorizontalFlip + "
          "ToTensor + Normalize)")
    print("- progprune: `Batches(split, shuffle=True, seed=epoch)` over the decoded uint8 split (index with a seeded "
          "permutation; crop/flip and normalization on the whole batch)" + (
              "\n- SMOKE MODE: tiny sizes and repeats; the numbers only show the script runs" if args.smoke else ""))
    print("\n| data | loader | samples/s median [p10–p90] | fast path × |")
    print("|---|---|---:|---:|")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        for label, name, writer, cls, stats, augment in (
                ("MNIST-format 1×28×28", "mnist", write_mnist, MNIST, MNIST_STATS, []),
                ("CIFAR-format 3×32×32, augmented", "cifar10", write_cifar, CIFAR10, CIFAR_STATS,
                 [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip()])):
            root = Path(tmp) / name
            writer(root, args.samples, rng)
            # val_fraction: a one-image carve, so both loaders read (nearly) the same number of images.
            split = DATASETS.get(name)({"root": str(root), "download": False, "val_fraction": 1 / args.samples,
                                        "mean": list(stats[0]), "std": list(stats[1])}, 0).train
            fast, count = samples_per_s(lambda e: Batches(split, args.batch_size, shuffle=True, seed=e,
                                                          device=device), args.warmup, args.repeats, device)
            transform = transforms.Compose([*augment, transforms.ToTensor(), transforms.Normalize(*stats)])
            dataset = cls(str(root), train=True, transform=transform)
            fast_median = spread(fast)[0]
            rows = [("progprune Batches", fast, count)]
            for workers in args.workers:
                rows.append((f"torchvision DataLoader, {workers} workers",
                             *samples_per_s(torchvision_epochs(dataset, args.batch_size, workers), args.warmup,
                                            args.repeats, device)))
            for loader, rates, n in rows:
                median, p10, p90 = spread(rates)
                print(f"| {label} ({n:,} per pass) | {loader} | {median:,.0f} [{p10:,.0f}–{p90:,.0f}] | "
                      f"{fast_median / median:.1f}× |", flush=True)


if __name__ == "__main__":
    main()
