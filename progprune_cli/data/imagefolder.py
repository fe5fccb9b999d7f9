"""Your own images in torchvision's ImageFolder layout (root/{train,test[,val]}/<class>/*.png), read lazily."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from torch.utils.data import Dataset, Subset

from progprune_cli.data.base import DATASETS, DataInfo, DataSplits
from progprune_cli.data.mnist import carve_val, check_split, existing_dir
from progprune_cli.config.strict import from_dict
from progprune_cli.errors import UserError

if TYPE_CHECKING:  # torchvision is imported where used: it takes seconds to load and most runs skip it
    from torchvision.datasets import ImageFolder

_HINT = "put images in train/<class>/ and test/<class>/ there"


@dataclass(frozen=True)
class Options:
    root: str = "data/imagefolder"
    image_size: int = 32
    grayscale: bool = False
    val_fraction: float = 0.1


@DATASETS.register("imagefolder")
def build(options: dict[str, Any], seed: int) -> DataSplits:
    opts = from_dict(Options, options, "dataset", ("name",))
    if opts.image_size < 1:
        raise UserError(f"dataset.image_size: got {opts.image_size}; must be >= 1")
    check_split(opts.val_fraction)
    root = existing_dir(opts.root, _HINT)
    to_tensor = _transform(opts.image_size, opts.grayscale)
    train, test = _folder(root / "train", to_tensor), _folder(root / "test", to_tensor)
    _same_classes(train, test)
    val: Dataset
    if (root / "val").is_dir():
        val = _folder(root / "val", to_tensor)
        _same_classes(train, val)
        train_set: Dataset = train
    else:
        train_idx, val_idx = carve_val(len(train), opts.val_fraction, seed)
        train_set, val = Subset(train, train_idx.tolist()), Subset(train, val_idx.tolist())
    info = DataInfo(channels=1 if opts.grayscale else 3, height=opts.image_size, width=opts.image_size,
                    num_classes=len(train.classes))
    return DataSplits(train=train_set, val=val, test=test, info=info)


def _transform(size: int, grayscale: bool) -> Callable[[Any], Any]:
    """Every image to (C, size, size) in [0, 1]; a square resize so any photo fits the model's fixed input."""
    from torchvision import transforms

    steps: list[Any] = [transforms.Grayscale(num_output_channels=1)] if grayscale else []
    return transforms.Compose([*steps, transforms.Resize((size, size)), transforms.ToTensor()])


def _folder(path: Path, transform: Callable[[Any], Any]) -> ImageFolder:
    """torchvision's ImageFolder, with its missing-folder errors turned into the one-line form users see."""
    from torchvision.datasets import ImageFolder

    if not path.is_dir():
        raise UserError(f"dataset.root: {path.parent} has no {path.name}/ folder; {_HINT}")
    try:
        return ImageFolder(str(path), transform=transform)
    except FileNotFoundError as error:  # no class folders, or a class folder without images
        raise UserError(f"dataset.root: {path}: {error}") from None


def _same_classes(train: ImageFolder, other: ImageFolder) -> None:
    """Label i must mean the same class in every split, and ImageFolder numbers classes by sorted folder name."""
    if other.classes != train.classes:
        raise UserError(f"dataset.root: {other.root} has classes {', '.join(other.classes)} "
                        f"but {train.root} has {', '.join(train.classes)}; they must match")
