"""The MNIST family's files (IDX, maybe .gz) read and downloaded with torchvision's MNIST classes."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from progprune_cli.data.cache import Decoded
from progprune_cli.data.fetch import one_line
from progprune_cli.errors import UserError

PREFIXES = {"train": "train", "test": "t10k"}


@dataclass(frozen=True)
class IdxFiles:
    """MNIST, Fashion-MNIST or KMNIST: four IDX files in torchvision's root/<Class>/raw, or flat in root."""

    name: str
    tv_class: str  # the torchvision.datasets class: MNIST, FashionMNIST or KMNIST
    title: str
    channels: int = 1

    def torchvision(self) -> Any:
        import torchvision.datasets  # imported here: torchvision takes seconds to load, most runs skip it

        return getattr(torchvision.datasets, self.tv_class)

    def names(self) -> list[str]:
        """The uncompressed file names, from torchvision's list of downloads (train images, labels, test ...)."""
        return [name.removesuffix(".gz") for name, _ in self.torchvision().resources]

    def folder(self, root: Path) -> Path:
        return root / self.tv_class / "raw"  # torchvision's raw_folder

    def find(self, root: Path, name: str) -> Path | None:
        """`name` or `name`.gz, in torchvision's layout first, then flat in `root` (hand-made folders)."""
        for folder in (self.folder(root), root):
            for candidate in (folder / name, folder / f"{name}.gz"):
                if candidate.is_file():
                    return candidate
        return None

    def missing(self, root: Path) -> list[str]:
        return [name for name in self.names() if self.find(root, name) is None]

    def fetch(self, root: Path) -> None:
        self.torchvision()(str(root), train=True, download=True)  # downloads both splits' files

    def by_hand(self, root: Path) -> str:
        return (f"put {', '.join(self.names())} (each may be .gz, from {self.torchvision().mirrors[0]}) "
                f"in {self.folder(root)} or in {root}")

    def sources(self, root: Path, split: str) -> list[Path]:
        return [self._path(root, f"{PREFIXES[split]}-{kind}") for kind in ("images-idx3-ubyte", "labels-idx1-ubyte")]

    def _path(self, root: Path, name: str) -> Path:
        found = self.find(root, name)
        if found is None:
            raise UserError(f"dataset.root: {self.folder(root)} has no {name}; {self.by_hand(root)}")
        return found

    def verify(self, root: Path) -> None:
        """torchvision keeps no checksums of the unpacked files; decode checks their structure instead."""

    def decode(self, root: Path, split: str) -> Decoded:
        from torchvision.datasets.mnist import read_image_file, read_label_file

        images_path, labels_path = self.sources(root, split)
        images = _read(images_path, read_image_file, f"{self.title} IDX image")
        labels = _read(labels_path, read_label_file, f"{self.title} IDX label")
        if len(images) != len(labels):
            raise UserError(f"dataset.root: {images_path} has {len(images)} images "
                            f"but {labels_path} has {len(labels)} labels")
        classes = tuple(self.torchvision().classes)
        if len(labels) and int(labels.max()) >= len(classes):
            raise UserError(f"dataset.root: {labels_path} has label {int(labels.max())}; "
                            f"{self.title} labels are 0..{len(classes) - 1}")
        return Decoded(images.unsqueeze(1).contiguous(), labels.long(), classes)


def _read(path: Path, reader: Callable[[str], torch.Tensor], what: str) -> torch.Tensor:
    """torchvision's IDX reader on `path` (unpacked to a temporary file first when it is .gz)."""
    try:
        if path.suffix != ".gz":
            return reader(str(path))
        from torchvision.datasets.utils import extract_archive

        with tempfile.TemporaryDirectory() as tmp:
            return reader(extract_archive(str(path), tmp))
    except UserError:
        raise
    except Exception as error:  # torchvision asserts on a bad header; gzip, view and dtype errors too
        raise UserError(f"dataset.root: {path} is not a readable {what} file ({one_line(error)}); delete it and "
                        "run again with dataset.download=true, or put a good copy there") from None

