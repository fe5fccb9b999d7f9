"""Do the experiment presets train stably on real data? Each preset runs at its own optimizer, lr, momentum, batch
size and lr schedule (fewer epochs where this CPU demands it) on real images of its kind, and the table says whether
every stage's loss stayed finite, with the loss and accuracy of every epoch and the wall time.

    cd bench && ../.venv/bin/python preset_stability.py --cifar DIR                 # every preset
    cd bench && ../.venv/bin/python preset_stability.py lenet5_mnist                # one preset (MNIST-like only)
    cd bench && ../.venv/bin/python preset_stability.py lenet5_mnist -- optimizer.lr=0.05   # an override too

There is no MNIST on this machine and no network. The MNIST presets run on *MNIST-like* files built from real
handwriting: scikit-learn's bundled 8×8 digits (1,797 images, 0..16), each digit's ink cropped, scaled (bilinear)
into a 20×20 box keeping its aspect ratio, centred by centre of mass in 28×28 and written as uint8 0..255 in the four
MNIST IDX files, as MNIST itself was built from NIST. A seeded `--mnist-test` of them is the test set (as built);
the rest are the training set, replicated with random shifts of up to ±2 pixels up to `--mnist-train` images (the
10% the presets hold out for validation therefore holds shifted copies of training digits: val accuracy is
optimistic). The CIFAR presets run on a CIFAR-10 subset of real images in ImageFolder layout (`--cifar DIR`,
e.g. shared/data/cifar10-subset.tar.xz unpacked) through `dataset=imagefolder` with the preset's own crop + flip and
normalization. resnet56/vgg16 run only a few epochs per stage and no dense-as-long stage (their epochs take
minutes on 2 cores); every run times its models with fewer repeats (timing is not what this measures).
"""

from __future__ import annotations

import argparse
import gzip
import math
import re
import struct
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from machine import cpu_name, load_average  # bench/machine.py (scripts run from bench/)
from strategies import run  # bench/strategies.py: one `progprune train` in a folder, its results.json or error

CONF = Path(__file__).resolve().parent.parent / "conf"
MNIST_PRESETS = ("seed_mnist", "lenet300_mnist", "lenet5_mnist")
CIFAR_PRESETS = ("seed_cifar10", "resnet56_cifar10", "vgg16_cifar10")
# Epoch overrides per preset: none (the preset's own) where a whole run fits on 2 cores; resnet56/vgg16 epochs take
# 1-8 minutes each here, depending on the machine's load.
FEW = ["train.epochs=2", "prune.epochs=1", "finetune.epochs=1", "evaluate.dense_baseline=false"]
SHORT = {"resnet56_cifar10": FEW, "vgg16_cifar10": FEW}
LIGHT_TIMING = ["evaluate.repeats=2", "evaluate.min_repeats=1", "evaluate.warmup=1", "evaluate.timing_samples=64"]
EPOCH_LINE = re.compile(r"(\w+) epoch (\d+): train loss (\S+) acc (\S+)%, val loss (\S+) acc (\S+)%")
STAGES = ("train", "prune", "finetune", "dense_long")


def mnist_like(image: np.ndarray) -> np.ndarray:
    """One 8×8 digit (0..16) as MNIST builds its images: ink into a 20×20 box (aspect kept), centre of mass at
    the centre of 28×28, uint8."""
    from PIL import Image

    rows, cols = np.nonzero(image)
    ink = image[rows.min():rows.max() + 1, cols.min():cols.max() + 1].astype(np.float32) * (255.0 / 16.0)
    scale = 20.0 / max(ink.shape)
    size = (max(1, round(ink.shape[1] * scale)), max(1, round(ink.shape[0] * scale)))
    box = np.clip(np.asarray(Image.fromarray(ink, mode="F").resize(size, Image.BILINEAR)), 0, 255)
    ys, xs = np.indices(box.shape)
    cy, cx = (ys * box).sum() / box.sum(), (xs * box).sum() / box.sum()
    top, left = int(round(14 - cy)), int(round(14 - cx))
    top, left = min(max(top, 0), 28 - box.shape[0]), min(max(left, 0), 28 - box.shape[1])
    out = np.zeros((28, 28), np.float32)
    out[top:top + box.shape[0], left:left + box.shape[1]] = box
    return out.round().astype(np.uint8)


def shifted(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """`image` moved by (dy, dx) pixels, zeros where it came from."""
    out = np.zeros_like(image)
    h, w = image.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = image[max(-dy, 0):h - max(dy, 0),
                                                                      max(-dx, 0):w - max(dx, 0)]
    return out


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    """An IDX file as MNIST ships it (gzipped): big-endian magic, one uint32 per dimension, then the bytes."""
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def write_mnist_like(root: Path, n_train: int, n_test: int, seed: int = 0) -> dict[str, float]:
    """The four MNIST IDX files built from scikit-learn's real handwritten digits; returns their statistics."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(digits.images))
    images = np.stack([mnist_like(image) for image in digits.images])
    test, base = order[:n_test], order[n_test:]
    picks = np.concatenate([base, rng.choice(base, max(n_train - len(base), 0))])[:n_train]
    moves = rng.integers(-2, 3, (len(picks), 2))
    moves[:len(base)] = 0  # every training digit once as built, then shifted copies
    train_x = np.stack([shifted(images[i], int(dy), int(dx)) for i, (dy, dx) in zip(picks, moves)])
    root.mkdir(parents=True)
    for prefix, x, y in (("train", train_x, digits.target[picks]), ("t10k", images[test], digits.target[test])):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", x, 2051)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", y, 2049)
    pixels = train_x.astype(np.float64) / 255
    return {"train": len(train_x), "test": len(test), "digits": len(base), "mean": pixels.mean(), "std": pixels.std()}


def cifar_overrides(preset: str, root: Path) -> list[str]:
    """The CIFAR subset through ImageFolder with the preset's crop + flip and normalization: its own `dataset:`
    values where it sets them (seed_cifar10), else conf/dataset/cifar10.yaml's."""
    own = (yaml.safe_load((CONF / "experiment" / f"{preset}.yaml").read_text()) or {}).get("dataset") or {}
    group = yaml.safe_load((CONF / "dataset" / "cifar10.yaml").read_text())
    values = {key: own.get(key, group[key]) for key in ("augment", "mean", "std")}
    return ["dataset=imagefolder", f"dataset.root={root}", f"dataset.augment={str(values['augment']).lower()}",
            f"dataset.mean=[{','.join(map(str, values['mean']))}]",
            f"dataset.std=[{','.join(map(str, values['std']))}]"]


@dataclass
class Outcome:
    """What one preset's run showed: every epoch's figures per stage, how it ended, how long it took."""

    preset: str
    seconds: float
    error: str | None
    epochs: dict[str, list[tuple[int, float, float, float, float]]] = field(default_factory=dict)
    test: dict[str, float] = field(default_factory=dict)
    train_samples: int | None = None
    recipe: str = ""


def schedule(cfg: dict) -> str:
    """A stage's lr schedule in words, with its warm-up."""
    warmup = cfg.get("warmup_epochs") or 0
    return cfg["name"] + (f", {warmup} warm-up epoch{'s' if warmup > 1 else ''} from "
                          f"{cfg['warmup_factor']:g}× lr" if warmup else "")


def recipe(folder: Path) -> str:
    """The optimizer settings the run really used, from its resolved config (also there when it failed)."""
    path = folder / ".hydra" / "config.yaml"
    if not path.exists():
        return "(no config written)"
    cfg = yaml.safe_load(path.read_text())
    opt = cfg["optimizer"]
    options = ", ".join(f"{k} {v}" for k, v in opt.items() if k not in ("name", "lr") and v not in (None, 0.0))
    stages = "; ".join(f"{stage} {cfg[stage]['epochs']} epochs, batch {cfg[stage]['batch_size']}, lr "
                       f"{cfg[stage]['lr'] if cfg[stage]['lr'] is not None else opt['lr']} "
                       f"({schedule(cfg[stage]['lr_scheduler'])})" for stage in ("train", "prune", "finetune"))
    return f"optimizer {opt['name']} lr {opt['lr']}{', ' + options if options else ''}; {stages}"


def outcome(preset: str, folder: Path, seconds: float, results: dict | str) -> Outcome:
    found = Outcome(preset, seconds, results if isinstance(results, str) else None, recipe=recipe(folder))
    log = folder / "run.log"
    for line in log.read_text().splitlines() if log.exists() else []:
        if match := EPOCH_LINE.match(line):
            stage, epoch, *figures = match.groups()
            values = [float(v) for v in figures]
            found.epochs.setdefault(stage, []).append((int(epoch), values[0], values[1] / 100, values[2],
                                                       values[3] / 100))
        elif match := re.search(r"\((\d+) train samples\)", line):
            found.train_samples = int(match[1])
    if isinstance(results, dict):
        found.test = {name: record["accuracy"]["test"] for name, record in results["models"].items()}
    return found


def stage_verdict(found: Outcome, stage: str) -> str:
    rows = found.epochs.get(stage, [])
    where = re.match(rf"progprune: error: {stage} (epoch \d+, step \d+ of \d+): .*diverged", found.error or "")
    if where:
        return f"**diverged** in {where[1]}"
    if not rows:
        return "not run" if found.error is None else "not reached"
    if not all(math.isfinite(r[1]) and math.isfinite(r[3]) for r in rows):
        return "**not finite**"
    near_chance = rows[-1][4] < 0.2  # the presets' data sets have 10 classes
    return "finite, **val accuracy < 20%**" if near_chance else "finite"


def report(found: Outcome) -> None:
    trained = f", trained on {found.train_samples:,} images" if found.train_samples else ""
    print(f"\n### {found.preset}: {'failed' if found.error else 'complete'}{trained}, wall time "
          f"{found.seconds:.0f} s\n")
    print(f"{found.recipe}\n")
    if found.error:
        print(f"error: `{found.error}`\n")
    print("| stage | verdict | epoch: train loss / train acc / val loss / val acc |")
    print("|---|---|---|")
    for stage in STAGES:
        rows = found.epochs.get(stage, [])
        cells = "; ".join(f"{e}: {tl:.4f} / {ta:.1%} / {vl:.4f} / {va:.1%}" for e, tl, ta, vl, va in rows)
        print(f"| {stage} | {stage_verdict(found, stage)} | {cells or '—'} |")
    if found.test:
        print("\ntest accuracy: " + ", ".join(f"{name} {acc:.2%}" for name, acc in found.test.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("presets", nargs="*", default=[*MNIST_PRESETS, *CIFAR_PRESETS])
    parser.add_argument("--cifar", type=Path, default=None,
                        help="a CIFAR-10 subset in ImageFolder layout (train/<class>/, test/<class>/); without it "
                        "the CIFAR presets are skipped")
    parser.add_argument("--mnist-train", type=int, default=10000, help="MNIST-like training images (the user's "
                        "diverging split had 10,000; 10%% of them are held out for validation)")
    parser.add_argument("--mnist-test", type=int, default=297, help="digits held out as the test set")
    parser.add_argument("--runs", type=Path, default=None, help="folder for data and run folders (default: temp)")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:cut])
    args.overrides = argv[cut + 1:]  # after --: extra overrides for every run
    root = args.runs or Path(tempfile.mkdtemp(prefix="progprune-stability-"))
    root.mkdir(parents=True, exist_ok=True)
    print("# Experiment presets on real data: does every stage's loss stay finite?\n")
    print(f"- machine: {cpu_name()}, load average at start {load_average()}; python {sys.version.split()[0]}")
    print(f"- every run: `progprune train experiment=NAME {' '.join(LIGHT_TIMING)} seed=0 {' '.join(args.overrides)}` "
          "plus the data overrides below; the preset's own optimizer, lr, momentum, batch and lr schedule")
    print(f"- run folders: {root}")
    mnist: list[str] = []
    if any(p in MNIST_PRESETS for p in args.presets):
        stats = write_mnist_like(root / "mnist", args.mnist_train, args.mnist_test)
        mnist = ["dataset=mnist", f"dataset.root={root / 'mnist'}", "dataset.download=false"]
        print(f"- MNIST-like data: {stats['digits']:,} of scikit-learn's 8×8 digits built into 28×28 as MNIST was, "
              f"replicated with random ±2 px shifts to {stats['train']:,} training images (10% held out for val); "
              f"{stats['test']:,} other digits as built are the test set; training pixels mean {stats['mean']:.4f} "
              f"std {stats['std']:.4f} (MNIST's: 0.1307, 0.3081; the presets normalize with MNIST's)")
    if args.cifar is not None:
        print(f"- CIFAR presets: `{' '.join(cifar_overrides('resnet56_cifar10', args.cifar))}` (the preset's own "
              "augment/mean/std where it sets them)")
    for preset in args.presets:
        if preset in MNIST_PRESETS:
            data = mnist
        elif args.cifar is not None:
            data = cifar_overrides(preset, args.cifar)
        else:
            print(f"\n### {preset}: skipped (no --cifar)")
            continue
        extra = SHORT.get(preset, [])
        print(f"\n(running {preset} {' '.join(extra)} ...)", file=sys.stderr, flush=True)
        started = time.perf_counter()
        results = run(root, preset, [f"experiment={preset}", *data, *extra, *LIGHT_TIMING, "seed=0",
                                     *args.overrides])
        found = outcome(preset, root / preset, time.perf_counter() - started, results)
        if extra:
            print(f"\n(epochs shortened: `{' '.join(extra)}`)")
        report(found)
        sys.stdout.flush()
    print(f"\nload average at the end: {load_average()}")


if __name__ == "__main__":
    main()
