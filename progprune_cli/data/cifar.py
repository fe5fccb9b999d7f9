"""The CIFAR family's python pickles, checked, read and downloaded with torchvision's CIFAR10/CIFAR100 classes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from progprune_cli.data.cache import Decoded
from progprune_cli.data.fetch import one_line
from progprune_cli.data.splits import Augment
from progprune_cli.errors import UserError

# Seed document §6.2: random crop 32 with padding 4 and a random horizontal flip, training images only.
AUGMENT = Augment(padding=4, flip=True)


@dataclass(frozen=True)
class CifarFiles:
    """CIFAR-10 or CIFAR-100: torchvision's extracted folder (cifar-10-batches-py/ ...) in `root`, or `root` itself."""

    name: str
    tv_class: str  # CIFAR10 or CIFAR100
    title: str
    channels: int = 3

    def torchvision(self) -> Any:
        import torchvision.datasets  # imported here: torchvision takes seconds to load, most runs skip it

        return getattr(torchvision.datasets, self.tv_class)

    def tv_root(self, root: Path) -> Path:
        """The root torchvision reads: `root`, or its parent when `root` is the extracted folder itself."""
        base = self.torchvision().base_folder
        return root.parent if root.name == base and not (root / base).is_dir() else root

    def folder(self, root: Path) -> Path:
        return self.tv_root(root) / self.torchvision().base_folder

    def checksums(self) -> list[tuple[str, str]]:
        """Every file torchvision needs, with the md5 it expects."""
        cls = self.torchvision()
        return [(name, md5) for name, md5 in cls.train_list + cls.test_list] + [(cls.meta["filename"],
                                                                                 cls.meta["md5"])]

    def missing(self, root: Path) -> list[str]:
        folder = self.folder(root)
        missing = [name for name, _ in self.checksums() if not (folder / name).is_file()]
        first = self.checksums()[0][0]
        if missing and (root / first).is_file() and root != folder:
            raise UserError(f"dataset.root: {root} holds {first} itself; torchvision reads the extracted folder: "
                            f"move the files into {folder}, or set dataset.root to a folder named "
                            f"{self.torchvision().base_folder}")
        return missing

    def fetch(self, root: Path) -> None:
        self.torchvision()(str(self.tv_root(root)), train=True, download=True)  # the archive holds both splits

    def by_hand(self, root: Path) -> str:
        cls = self.torchvision()
        return (f"extract {cls.filename} ({cls.url}) in {self.tv_root(root)}, which makes {self.folder(root)} "
                f"with {', '.join(name for name, _ in self.checksums())}")

    def sources(self, root: Path, split: str) -> list[Path]:
        cls = self.torchvision()
        names = [name for name, _ in (cls.train_list if split == "train" else cls.test_list)]
        return [self.folder(root) / name for name in [*names, cls.meta["filename"]]]

    def verify(self, root: Path) -> None:
        from torchvision.datasets.utils import check_integrity

        for name, md5 in self.checksums():
            path = self.folder(root) / name
            if not check_integrity(str(path), md5):
                raise UserError(f"dataset.root: {path} is corrupt (its md5 is not {md5}, torchvision's); delete it "
                                f"and run again with dataset.download=true, or {self.by_hand(root)}")

    def decode(self, root: Path, split: str) -> Decoded:
        try:
            data = self.torchvision()(str(self.tv_root(root)), train=split == "train", download=False)
            images = torch.from_numpy(data.data).permute(0, 3, 1, 2).contiguous()  # torchvision keeps HWC
            labels = torch.tensor(data.targets, dtype=torch.long)
        except Exception as error:  # md5-checked files should not fail; if they do, say where
            raise UserError(f"dataset.root: cannot read the {self.title} {split} batches in {self.folder(root)} "
                            f"({one_line(error)})") from None
        return Decoded(images, labels, tuple(data.classes))
