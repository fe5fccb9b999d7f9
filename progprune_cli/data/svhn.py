"""SVHN cropped digits (73,257 train / 26,032 test, 32×32 RGB) through torchvision.datasets.SVHN (needs scipy)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from progprune_cli.data.builtin import register_builtin
from progprune_cli.data.cache import Decoded
from progprune_cli.data.fetch import one_line
from progprune_cli.data.splits import Augment
from progprune_cli.errors import UserError

CLASSES = tuple(str(d) for d in range(10))  # torchvision maps SVHN's label 10 to digit 0


@dataclass(frozen=True)
class SvhnFiles:
    """train_32x32.mat and test_32x32.mat side by side in `root`, as torchvision downloads them."""

    name: str = "svhn"
    title: str = "SVHN"
    channels: int = 3

    def torchvision(self) -> Any:
        import torchvision.datasets  # imported here: torchvision takes seconds to load, most runs skip it

        return torchvision.datasets.SVHN

    def entry(self, split: str) -> tuple[str, str, str]:
        """torchvision's (url, file name, md5) of a split."""
        url, filename, md5 = self.torchvision().split_list[split]
        return url, filename, md5

    def folder(self, root: Path) -> Path:
        return root

    def missing(self, root: Path) -> list[str]:
        return [name for _, name, _ in map(self.entry, ("train", "test")) if not (root / name).is_file()]

    def fetch(self, root: Path) -> None:
        _scipy()
        for split in ("train", "test"):
            if not (root / self.entry(split)[1]).is_file():
                self.torchvision()(str(root), split=split, download=True)

    def by_hand(self, root: Path) -> str:
        urls = [url for url, _, _ in map(self.entry, ("train", "test"))]
        return f"download {' and '.join(urls)} into {root}"

    def sources(self, root: Path, split: str) -> list[Path]:
        return [root / self.entry(split)[1]]

    def verify(self, root: Path) -> None:
        from torchvision.datasets.utils import check_integrity

        for split in ("train", "test"):
            _, name, md5 = self.entry(split)
            if not check_integrity(str(root / name), md5):
                raise UserError(f"dataset.root: {root / name} is corrupt (its md5 is not {md5}, torchvision's); "
                                f"delete it and run again with dataset.download=true, or {self.by_hand(root)}")

    def decode(self, root: Path, split: str) -> Decoded:
        _scipy()
        try:
            data = self.torchvision()(str(root), split=split, download=False)
            images = torch.from_numpy(data.data).contiguous()  # torchvision already made it (N, C, H, W)
            labels = torch.from_numpy(data.labels).long()
        except Exception as error:
            raise UserError(f"dataset.root: cannot read {root / self.entry(split)[1]} as SVHN "
                            f"({one_line(error)})") from None
        return Decoded(images, labels, CLASSES)


def _scipy() -> None:
    try:
        import scipy.io  # noqa: F401  torchvision reads SVHN's .mat files with it
    except ImportError:
        raise UserError("dataset=svhn: needs scipy to read its .mat files; pip install scipy") from None


# Crop only: a mirrored digit is a different symbol (or none), unlike a mirrored photo.
register_builtin(SvhnFiles(), Augment(padding=4, flip=False))
