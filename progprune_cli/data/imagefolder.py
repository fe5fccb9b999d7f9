"""Your own images in torchvision's ImageFolder layout (root/{train,test[,val]}/<class>/*.png): in memory when small."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from omegaconf import MISSING
from torch.utils.data import DataLoader, Dataset

from progprune_cli.data import cache
from progprune_cli.data.base import DataInfo, DataSplits, register
from progprune_cli.data.builtin import carve_val, check_split
from progprune_cli.data.cache import Decoded
from progprune_cli.data.fetch import existing_dir, one_line
from progprune_cli.data.splits import Augment, Split, TensorSplit, check_stats, normalize, remaining_order
from progprune_cli.config import DatasetConfig
from progprune_cli.errors import UserError

if TYPE_CHECKING:  # torchvision is imported where used: it takes seconds to load and most runs skip it
    from torchvision.datasets import ImageFolder

_HINT = "put images in train/<class>/ and test/<class>/ there"
NAME = "imagefolder"


@dataclass
class ImageFolderConfig(DatasetConfig):
    """The values are in conf/dataset/imagefolder.yaml."""

    root: str = MISSING
    image_size: int = MISSING
    grayscale: bool = MISSING
    val_fraction: float = MISSING
    mean: list[float] = MISSING
    std: list[float] = MISSING
    in_memory_max_mb: int = MISSING
    num_workers: int = MISSING
    augment: bool = MISSING  # random crop with padding 4 + horizontal flip of training images (in-memory sets)



class Images(Dataset):
    """The images of one folder split decoded to uint8 (C, size, size); a file that fails gives label −1 instead of
    an exception, so the error can name the file from the main process (not as a worker's multi-line traceback)."""

    def __init__(self, samples: list[tuple[str, int]], size: int, grayscale: bool) -> None:
        self.samples, self.size, self.grayscale = samples, size, grayscale
        self._transform: Any = None

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, i: int) -> torch.Tensor:
        """Sample i as uint8, raising whatever PIL raises."""
        from torchvision import transforms
        from torchvision.datasets.folder import default_loader

        if self._transform is None:  # built on first use, in the worker that uses it
            steps: list[Any] = [transforms.Grayscale(num_output_channels=1)] if self.grayscale else []
            # A square resize so any photo fits the model's fixed input; uint8 so the cache stays 1 byte a pixel.
            self._transform = transforms.Compose([*steps, transforms.Resize((self.size, self.size)),
                                                  transforms.PILToTensor()])
        return self._transform(default_loader(self.samples[i][0]))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        try:
            return self.load(i), self.samples[i][1]
        except Exception:
            return torch.zeros((1 if self.grayscale else 3, self.size, self.size), dtype=torch.uint8), -1

    def fail(self, i: int) -> UserError:
        """The one-line error for sample i, with the reason found by decoding it again here."""
        try:
            self.load(i)
            reason = "it failed in a loader worker"
        except Exception as error:
            reason = one_line(error)
        return UserError(f"dataset.root: {self.samples[i][0]} cannot be read as an image ({reason}); "
                         "fix or remove it")

    def read(self, order: list[int], batch_size: int, workers: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """uint8 batches of the samples in `order`, decoded by `workers` processes, checked for failed files."""
        loader = DataLoader(self, batch_size=batch_size, sampler=order, num_workers=workers)
        for k, (images, labels) in enumerate(loader):
            bad = (labels < 0).nonzero()
            if len(bad):
                raise self.fail(order[k * batch_size + int(bad[0])])
            yield images, labels

    def decode(self, workers: int) -> Decoded:
        parts = list(self.read(list(range(len(self))), 256, workers))
        images = torch.cat([p[0] for p in parts])
        return Decoded(images, torch.cat([p[1] for p in parts]).long(), ())


@dataclass(frozen=True, eq=False)
class StreamingSplit(Split):
    """A folder split too big for memory: decoded per batch by DataLoader workers, same Batches contract (seeded
    order; `start` skips by cutting the order, so a resumed epoch decodes only what is left)."""

    images: Images
    indices: torch.Tensor | None = None  # a subset of the folder (the carved train or val part)
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    augment: Augment | None = None
    num_workers: int = 2

    def __len__(self) -> int:
        return len(self.images) if self.indices is None else len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        j = i if self.indices is None else int(self.indices[i])
        image, label = self.images[j]
        if label < 0:
            raise self.images.fail(j)
        return normalize(image[None], self.mean, self.std)[0], torch.tensor(label)

    def batches(self, batch_size: int, shuffle: bool, seed: int, device: torch.device,
                start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        tail = remaining_order(len(self), shuffle, seed, self.indices, start, batch_size)
        for k, (images, labels) in enumerate(self.images.read(tail, batch_size, self.num_workers)):
            yield self.finish(images.to(device, non_blocking=True), labels.to(device, non_blocking=True), seed,
                              start + k)


def _parse(opts: ImageFolderConfig) -> ImageFolderConfig:
    if opts.image_size < 1:
        raise UserError(f"dataset.image_size: got {opts.image_size}; must be >= 1")
    for key in ("in_memory_max_mb", "num_workers"):
        if getattr(opts, key) < 0:
            raise UserError(f"dataset.{key}: got {getattr(opts, key)}; must be >= 0")
    check_split(opts.val_fraction)
    check_stats(opts.mean, opts.std, 1 if opts.grayscale else 3)
    return opts


def _scan(opts: ImageFolderConfig) -> tuple[Path, dict[str, ImageFolder]]:
    """The root and its split folders (val only when present), all with the same classes."""
    root = existing_dir(opts.root, _HINT)
    folders = {"train": _folder(root / "train"), "test": _folder(root / "test")}
    if (root / "val").is_dir():
        folders["val"] = _folder(root / "val")
    for folder in folders.values():
        _same_classes(folders["train"], folder)
    return root, folders


def _in_memory(folders: dict[str, ImageFolder], opts: ImageFolderConfig) -> bool:
    pixels = (1 if opts.grayscale else 3) * opts.image_size ** 2
    return sum(len(f.samples) for f in folders.values()) * pixels <= opts.in_memory_max_mb * 2 ** 20


def _images(folder: ImageFolder, opts: ImageFolderConfig) -> Images:
    return Images(list(folder.samples), opts.image_size, opts.grayscale)


def _decoded(root: Path, split: str, folder: ImageFolder, opts: ImageFolderConfig) -> Decoded:
    path = cache.cache_path(root, NAME, split, (Path(p) for p, _ in folder.samples), classes=folder.classes,
                            image_size=opts.image_size, grayscale=opts.grayscale)
    decoded = cache.decoded_or_cached(path, lambda: _images(folder, opts).decode(opts.num_workers), len(folder.classes))
    return Decoded(decoded.images, decoded.labels, tuple(folder.classes))


def prepare(cfg: ImageFolderConfig) -> None:
    opts = _parse(cfg)
    root, folders = _scan(opts)
    if _in_memory(folders, opts):
        for split, folder in folders.items():
            _decoded(root, split, folder, opts)


@register(NAME, prepare, ImageFolderConfig)
def build(cfg: ImageFolderConfig, seed: int) -> DataSplits:
    opts = _parse(cfg)
    root, folders = _scan(opts)
    classes = tuple(folders["train"].classes)
    info = DataInfo(channels=1 if opts.grayscale else 3, height=opts.image_size, width=opts.image_size,
                    num_classes=len(classes), classes=classes)
    stats = {"mean": tuple(opts.mean), "std": tuple(opts.std)}
    sets: dict[str, Split]
    if _in_memory(folders, opts):
        sets = {split: TensorSplit(d.images, d.labels, **stats)
                for split, d in ((s, _decoded(root, s, f, opts)) for s, f in folders.items())}
    else:
        sets = {split: StreamingSplit(_images(f, opts), num_workers=opts.num_workers, **stats)
                for split, f in folders.items()}
    if "val" not in sets:
        train_idx, val_idx = carve_val(len(sets["train"]), opts.val_fraction, seed)
        whole = sets["train"]
        if isinstance(whole, TensorSplit):
            sets["train"], sets["val"] = whole.subset(train_idx), whole.subset(val_idx)
        else:
            sets["train"], sets["val"] = (StreamingSplit(whole.images, idx, num_workers=opts.num_workers, **stats)
                                          for idx in (train_idx, val_idx))
    if opts.augment and isinstance(sets["train"], TensorSplit):
        # The same seeded, per-batch crop + flip as CIFAR's (§6.2); train accuracy is still measured without it.
        sets["train"] = replace(sets["train"], augment=Augment())
    return DataSplits(train=sets["train"], val=sets["val"], test=sets["test"], info=info)


def _folder(path: Path) -> ImageFolder:
    """torchvision's ImageFolder (file list and classes only), its missing-folder errors in the one-line form."""
    from torchvision.datasets import ImageFolder

    if not path.is_dir():
        raise UserError(f"dataset.root: {path.parent} has no {path.name}/ folder; {_HINT}")
    try:
        return ImageFolder(str(path))
    except FileNotFoundError as error:  # no class folders, or a class folder without images
        raise UserError(f"dataset.root: {path}: {one_line(error).removeprefix('FileNotFoundError: ')}") from None


def _same_classes(train: ImageFolder, other: ImageFolder) -> None:
    """Label i must mean the same class in every split, and ImageFolder numbers classes by sorted folder name."""
    if other.classes != train.classes:
        raise UserError(f"dataset.root: {other.root} has classes {', '.join(other.classes)} "
                        f"but {train.root} has {', '.join(train.classes)}; they must match")
