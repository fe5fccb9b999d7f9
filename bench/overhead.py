"""Runner overhead: a whole `progprune train` vs a plain hand-written PyTorch script doing the same epochs and
evaluations."""

from __future__ import annotations

import argparse
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from machine import cpu_name, load_average  # bench/machine.py (scripts run from bench/)

PROGPRUNE = str(Path(sys.executable).parent / "progprune")

# The plain script: what a careful person writes by hand for the same job — the same files read with torchvision,
# the same normalization, split, model, optimizer, batch size and epochs, val accuracy after every epoch and
# train/val/test accuracy of each model at the end; with prune epochs, magnitude pruning of every layer's weight to
# 50% along a cubic ramp (one step per epoch) with the masks kept after every step, then finetuning. It times
# nothing and writes no run folder.
PLAIN = r'''
import sys, torch, torch.nn as nn, torch.nn.functional as F
from torchvision.datasets import MNIST
root, epochs, prune_epochs, finetune_epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
torch.manual_seed(0)
def load(train):
    d = MNIST(root, train=train, download=False)
    return ((d.data.float() / 255 - 0.1307) / 0.3081).unsqueeze(1), d.targets
x, y = load(True); xt, yt = load(False)
perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
n_val = round(0.1 * len(x)); xv, yv = x[perm[:n_val]], y[perm[:n_val]]; x, y = x[perm[n_val:]], y[perm[n_val:]]
model = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 32, 3, padding=1),
                      nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(32 * 7 * 7, 10))
weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
opt = torch.optim.Adam(model.parameters(), lr=0.001)
masks = []
@torch.inference_mode()
def accuracy(a, b):
    model.eval()
    return sum(int((model(a[i:i + 512]).argmax(1) == b[i:i + 512]).sum()) for i in range(0, len(a), 512)) / len(a)
def epoch(seed):
    model.train()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    for i in range(0, len(x), 32):
        idx = order[i:i + 32]
        opt.zero_grad(); loss = F.cross_entropy(model(x[idx]), y[idx]); loss.backward()
        for w, m in zip(weights, masks): w.grad.mul_(m)
        opt.step()
        with torch.no_grad():
            for w, m in zip(weights, masks): w.mul_(m)
    print(f"epoch {seed + 1}: val {accuracy(xv, yv):.4f}")
@torch.no_grad()
def prune(target):  # the smallest |w| of each layer's weight, as +strategy=weight (scope layer)
    masks[:] = []
    for w in weights:
        m = torch.ones_like(w)
        m.view(-1)[w.abs().view(-1).argsort()[:int(target * w.numel())]] = 0
        w.mul_(m); masks.append(m)
def final(name):  # train accuracy on 2,048 training samples, as progprune's evaluate.train_samples
    print(f"{name}: train {accuracy(x[:2048], y[:2048]):.4f} val {accuracy(xv, yv):.4f} test {accuracy(xt, yt):.4f}")
for e in range(epochs):
    epoch(e)
final("original")
if prune_epochs:
    for e in range(prune_epochs):  # the cubic schedule's steps, one at the start of each prune epoch, to 50%
        prune(0.5 * (1 - (1 - e / max(prune_epochs - 1, 1)) ** 3))
        epoch(epochs + e)
    final("pruned")
    for e in range(finetune_epochs):
        epoch(epochs + prune_epochs + e)
    final("pruned+finetuned")
'''


def write_mnist(root: Path, n_train: int, n_test: int, seed: int = 0) -> None:
    """Learnable MNIST-shaped data (a noisy prototype per class) as torchvision's four IDX files."""
    rng = np.random.default_rng(seed)
    prototypes = rng.integers(0, 256, (10, 28, 28)).astype(np.float32)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, count).astype(np.uint8)
        noise = rng.normal(0, 90, (count, 28, 28))
        images = np.clip(prototypes[labels] + noise, 0, 255).astype(np.uint8)
        for kind, array, magic in (("images-idx3", images, 2051), ("labels-idx1", labels, 2049)):
            header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
            (raw / f"{prefix}-{kind}-ubyte").write_bytes(header + array.tobytes())


def timed(command: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{done.stdout}\n{done.stderr}")
    return elapsed, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", type=int, default=12000, help="training images (MNIST has 60,000)")
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--epochs", type=int, nargs=2, default=(2, 6), help="short and long run; per epoch = "
                        "(long - short) / (difference in epochs)")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--pruned", type=int, nargs=3, metavar=("TRAIN", "PRUNE", "FINETUNE"), default=None,
                        help="instead: one `+strategy=weight` run of these epochs (no dense-as-long) vs the script")
    args = parser.parse_args()
    if args.pruned is not None:
        return pruned(args)
    work = Path(tempfile.mkdtemp(prefix="progprune-overhead-"))
    write_mnist(work / "mnist", args.train, args.test)
    (work / "plain.py").write_text(PLAIN)
    print(f"machine: {cpu_name()}, load average before {load_average()}")
    print(f"data: learnable MNIST-shaped IDX files, {args.train} train (10% held out for val) / {args.test} test")
    print("both: two_conv_cnn (the seed's CNN), Adam lr 0.001, batch 32, val accuracy every epoch, final "
          "train/val/test accuracy; progprune also times the model (evaluate.* defaults) and writes its run folder")
    times: dict[tuple[str, int], list[float]] = {}
    outputs: dict[str, str] = {}
    for pair in range(args.pairs):
        for epochs in args.epochs:
            runs = {
                "progprune": [PROGPRUNE, "train", "dataset=mnist", f"dataset.root={work / 'mnist'}",
                              "dataset.download=false", f"train.epochs={epochs}", "train.reuse=false",
                              f"hydra.run.dir={work / f'run-{pair}-{epochs}'}"],
                "plain": [sys.executable, str(work / "plain.py"), str(work / "mnist"), str(epochs), "0", "0"],
            }
            # Interleaved (A B A B ...), so drift in the machine's speed does not favour either.
            for name, command in runs.items():
                elapsed, out = timed(command, work)
                times.setdefault((name, epochs), []).append(elapsed)
                outputs[name] = out
    short, long = args.epochs
    print("\n| | progprune s | plain script s | ratio |\n|---|---:|---:|---:|")
    for epochs in args.epochs:
        p, q = statistics.median(times[("progprune", epochs)]), statistics.median(times[("plain", epochs)])
        print(f"| whole run, {epochs} epochs (median of {args.pairs}) | {p:.2f} | {q:.2f} | {p / q:.2f}× |")
    per = {name: (statistics.median(times[(name, long)]) - statistics.median(times[(name, short)])) / (long - short)
           for name in ("progprune", "plain")}
    print(f"| per training epoch | {per['progprune']:.2f} | {per['plain']:.2f} | "
          f"{per['progprune'] / per['plain']:.2f}× |")
    print("\nspreads (min–max s): " + "; ".join(
        f"{name} {e} ep {min(v):.2f}–{max(v):.2f}" for (name, e), v in sorted(times.items())))
    accuracy = next(line for line in outputs["progprune"].splitlines() if "original" in line and "%" in line)
    print(f"progprune's accuracy row: {accuracy.strip()}")
    print(f"plain script: {outputs['plain'].strip().splitlines()[-1]}")
    print(f"load average after {load_average()}")


def pruned(args: argparse.Namespace) -> None:
    """Issue 19's case: a weight-pruned run (train, prune, finetune; no dense-as-long) against the plain script."""
    work = Path(tempfile.mkdtemp(prefix="progprune-overhead-"))
    write_mnist(work / "mnist", args.train, args.test)
    (work / "plain.py").write_text(PLAIN)
    t, p, f = args.pruned
    print(f"machine: {cpu_name()}, load average before {load_average()}")
    print(f"data: learnable MNIST-shaped IDX files, {args.train} train (10% held out for val) / {args.test} test; "
          f"{t} + {p} + {f} epochs, +strategy=weight (50%, cubic), evaluate.dense_baseline=false")
    times: dict[str, list[float]] = {"progprune": [], "plain": []}
    measuring = []
    for pair in range(args.pairs):
        folder = work / f"run-{pair}"
        runs = {
            "progprune": [PROGPRUNE, "train", "+strategy=weight", "dataset=mnist", f"dataset.root={work / 'mnist'}",
                          "dataset.download=false", f"train.epochs={t}", f"prune.epochs={p}", f"finetune.epochs={f}",
                          "evaluate.dense_baseline=false", "train.reuse=false", f"hydra.run.dir={folder}"],
            "plain": [sys.executable, str(work / "plain.py"), str(work / "mnist"), str(t), str(p), str(f)],
        }
        for name, command in runs.items():  # interleaved
            elapsed, _ = timed(command, work)
            times[name].append(elapsed)
        measuring.append(next(line for line in (folder / "run.log").read_text().splitlines()
                              if "measuring took" in line).split("evaluate: ")[1])
    a, b = statistics.median(times["progprune"]), statistics.median(times["plain"])
    print("\n| | progprune s | plain script s | ratio |\n|---|---:|---:|---:|")
    print(f"| whole run (median of {args.pairs}) | {a:.2f} | {b:.2f} | {a / b:.2f}× |")
    print("each pair: " + "; ".join(f"{x:.1f} / {y:.1f} s" for x, y in zip(times["progprune"], times["plain"])))
    print("run.log: " + "; ".join(measuring))
    print(f"load average after {load_average()}")


if __name__ == "__main__":
    main()
