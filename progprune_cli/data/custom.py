"""Your own Dataset class: `dataset=custom dataset._target_=pkg.module.factory`, called once per split as
`factory(split=..., **kwargs)`; held in memory as float32 when small, else streamed through loader workers."""

from __future__ import annotations

import functools
import json
import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch
from omegaconf import MISSING
from torch.utils.data import DataLoader, Dataset, IterableDataset

from progprune_cli.config import DatasetConfig
from progprune_cli.data.base import DataInfo, DataSplits, register
from progprune_cli.data.builtin import carve_val, check_split
from progprune_cli.data.splits import Augment, Split, TensorSplit, remaining_order
from progprune_cli.errors import UserError, described
from progprune_cli.targets import import_callable

NAME = "custom"
KEY = "dataset._target_"
SPLITS = ("train", "val", "test")


@dataclass
class CustomConfig(DatasetConfig):
    """The values are in conf/dataset/custom.yaml; a key this schema does not declare is an argument of the factory
    (config/load.py folds it into `kwargs`)."""

    OPEN_KEYS = "kwargs"  # a class attribute, not a field

    _target_: str = MISSING
    kwargs: dict[str, Any] = MISSING
    val_fraction: float = MISSING
    in_memory_max_mb: int = MISSING
    num_workers: int = MISSING


@dataclass(frozen=True, eq=False)
class FloatSplit(TensorSplit):
    """An in-memory split of float32 inputs (N, C, H, W) exactly as the factory gave them: no normalization."""

    def __post_init__(self) -> None:
        if self.images.dtype != torch.float32 or self.images.dim() != 4 or len(self.labels) != len(self.images):
            raise ValueError(f"FloatSplit needs float32 (N, C, H, W) inputs and N labels, got {self.images.dtype} "
                             f"{tuple(self.images.shape)} and {len(self.labels)} labels")

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]

    def finish(self, images: torch.Tensor, labels: torch.Tensor, seed: int,
               index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return images, labels

    def inputs(self, limit: int | None) -> torch.Tensor:
        return self.images[: len(self) if limit is None else limit]

    def subset(self, indices: torch.Tensor, augment: Augment | None = None) -> FloatSplit:
        return FloatSplit(self.images[indices], self.labels[indices])


@dataclass(frozen=True)
class Checker:
    """What every sample of one split must be: an (input, label) pair, the input a float tensor of `shape`, the
    label an int in [0, num_classes) (num_classes None: any int >= 0). `call` names the split in messages."""

    call: str
    shape: tuple[int, ...] | None = None
    num_classes: int | None = None

    def __call__(self, data: Dataset, i: int) -> tuple[torch.Tensor, int]:
        """Sample i of `data`, or a one-line UserError saying what is wrong with it."""
        where = f"{KEY}: {self.call}[{i}]"
        try:
            sample = data[i]
        except Exception as error:
            raise UserError(f"{where} raised {described(error)}") from None
        if not isinstance(sample, (tuple, list)) or len(sample) != 2:
            raise UserError(f"{where}: got {_kind(sample)}; expected an (input tensor, int label) pair")
        x, y = sample
        if not isinstance(x, torch.Tensor):
            raise UserError(f"{where}: the input is a {type(x).__name__}; expected a torch.Tensor")
        if not x.is_floating_point():
            raise UserError(f"{where}: the input is {x.dtype}; expected floats as the model should see them "
                            "(e.g. x.float() / 255)")
        if x.dim() != 3:
            raise UserError(f"{where}: the input has shape {tuple(x.shape)}; expected (channels, height, width)")
        if self.shape is not None and tuple(x.shape) != self.shape:
            raise UserError(f"{where}: the input has shape {tuple(x.shape)} but the train split's sample 0 has "
                            f"{self.shape}; every sample must have one shape")
        label = _label(y)
        if label is None or label < 0:
            raise UserError(f"{where}: the label is {y!r} ({type(y).__name__}); expected an int >= 0")
        if self.num_classes is not None and label >= self.num_classes:
            raise UserError(f"{where}: the label is {label}; the train split's classes name {self.num_classes} "
                            f"(labels 0 to {self.num_classes - 1})")
        return x, label


@dataclass(frozen=True, eq=False)
class StreamedSplit(Split):
    """A split too big for memory: its samples read per batch by DataLoader workers in the seeded order (`start`
    skips by cutting the order); a batch that fails or holds a bad sample is read again here to name the sample."""

    data: Dataset
    check: Checker
    indices: torch.Tensor | None = None  # a subset of the dataset (the carved train or val part)
    num_workers: int = 0
    augment: Augment | None = None  # never set: Split.plain() reads it

    def __len__(self) -> int:
        return len(self.data) if self.indices is None else len(self.indices)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.check(self.data, i if self.indices is None else int(self.indices[i]))
        return x.float(), torch.tensor(y)

    def batches(self, batch_size: int, shuffle: bool, seed: int, device: torch.device,
                start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        tail = remaining_order(len(self), shuffle, seed, self.indices, start, batch_size)
        chunks = [tail[k : k + batch_size] for k in range(0, len(tail), batch_size)]
        loaded = iter(DataLoader(self.data, batch_sampler=chunks, num_workers=self.num_workers))
        for chunk in chunks:
            try:
                x, y = next(loaded)
            except Exception as error:  # a worker's error arrives as a multi-line wrapper: name the sample instead
                raise self._fault(chunk, error) from None
            if not self._sound(x, y, len(chunk)):
                raise self._fault(chunk, None)
            yield x.to(device, torch.float32, non_blocking=True), y.to(device, torch.int64, non_blocking=True)

    def _sound(self, x: Any, y: Any, count: int) -> bool:
        assert self.check.shape is not None and self.check.num_classes is not None
        return (isinstance(x, torch.Tensor) and x.is_floating_point() and tuple(x.shape) == (count, *self.check.shape)
                and isinstance(y, torch.Tensor) and y.dim() == 1 and len(y) == count
                and not (y.is_floating_point() or y.dtype == torch.bool)
                and int(y.min()) >= 0 and int(y.max()) < self.check.num_classes)

    def _fault(self, chunk: list[int], error: Exception | None) -> UserError:
        for j in chunk:
            self.check(self.data, j)  # raises the one line naming the first bad sample
        reason = described(error) if error is not None else "not a batch of (input, label) pairs"
        return UserError(f"{KEY}: {self.check.call}: a batch of samples {chunk[0]}... failed to load ({reason})")


@dataclass(frozen=True)
class Loaded:
    """The factory's splits as progprune holds them (val None: carved from train per seed) and their shape."""

    sets: dict[str, Split | None]
    info: DataInfo


def _parse(cfg: CustomConfig) -> CustomConfig:
    check_split(cfg.val_fraction)
    for key in ("in_memory_max_mb", "num_workers"):
        if getattr(cfg, key) < 0:
            raise UserError(f"dataset.{key}: got {getattr(cfg, key)}; must be >= 0")
    return cfg


def prepare(cfg: CustomConfig) -> None:
    """Every split made and checked now (the pre-run check): the factory's errors are one line before any folder."""
    _loaded(cfg)


@register(NAME, prepare, CustomConfig)
def build(cfg: CustomConfig, seed: int) -> DataSplits:
    loaded = _loaded(cfg)
    train, val, test = (loaded.sets[split] for split in SPLITS)
    assert train is not None and test is not None
    if val is None:
        train_idx, val_idx = carve_val(len(train), cfg.val_fraction, seed)
        if isinstance(train, FloatSplit):
            train, val = train.subset(train_idx), train.subset(val_idx)
        else:
            assert isinstance(train, StreamedSplit)
            train, val = replace(train, indices=train_idx), replace(train, indices=val_idx)
    return DataSplits(train=train, val=val, test=test, info=loaded.info)


def _loaded(cfg: CustomConfig) -> Loaded:
    """The splits, made once per process for these settings: the pre-run check, the models' check and the run then
    call the factory once, not three times (the val carving, which depends on the seed, is not part of this)."""
    _parse(cfg)
    return _load_once(json.dumps([cfg._target_, cfg.kwargs, cfg.in_memory_max_mb, cfg.num_workers], default=str))


@functools.lru_cache(maxsize=1)
def _load_once(key: str) -> Loaded:
    target, kwargs, max_mb, workers = json.loads(key)
    factory = import_callable(target, KEY)
    made = {split: _made(factory, target, split, kwargs) for split in SPLITS}
    calls = {split: f"{target}(split={split!r})" for split in SPLITS}
    train = made["train"]
    assert train is not None
    shape = tuple(Checker(calls["train"])(train, 0)[0].shape)
    classes = _classes(train, calls["train"])
    size = sum(len(data) for data in made.values() if data is not None) * math.prod(shape) * 4  # type: ignore
    if size <= max_mb * 2 ** 20:
        sets, num_classes = _in_memory(made, calls, shape, classes)
    elif classes is None:
        raise UserError(f"{KEY}: {calls['train']} has no `classes`, which a set streamed from its Dataset needs "
                        f"({size / 2 ** 20:.1f} MB of float32 inputs; dataset.in_memory_max_mb is {max_mb}); give "
                        "the Dataset a classes list (its class names), or raise dataset.in_memory_max_mb")
    else:
        sets, num_classes = _streamed(made, calls, shape, len(classes), workers), len(classes)
    names = classes if classes is not None else tuple(str(i) for i in range(num_classes))
    info = DataInfo(channels=shape[0], height=shape[1], width=shape[2], num_classes=num_classes, classes=names)
    return Loaded(sets, info)


def _streamed(made: dict[str, Dataset | None], calls: dict[str, str], shape: tuple[int, ...], num_classes: int,
              workers: int) -> dict[str, Split | None]:
    """Each split read per batch as it is used; only its first sample is checked now, the rest as they are read."""
    sets: dict[str, Split | None] = {}
    for split, data in made.items():
        check = Checker(calls[split], shape, num_classes)
        if data is not None:
            check(data, 0)
        sets[split] = None if data is None else StreamedSplit(data, check, num_workers=workers)
    return sets


def _in_memory(made: dict[str, Dataset | None], calls: dict[str, str], shape: tuple[int, ...],
               classes: tuple[str, ...] | None) -> tuple[dict[str, Split | None], int]:
    """Every sample of every split read and checked once, into one float32 tensor per split; the class count is
    `classes`' length, or one more than the largest label seen."""
    count = None if classes is None else len(classes)
    sets: dict[str, Split | None] = {}
    for split, data in made.items():
        if data is None:
            sets[split] = None
            continue
        check = Checker(calls[split], shape, count)
        samples = [check(data, i) for i in range(len(data))]  # type: ignore[arg-type]
        images = torch.stack([x for x, _ in samples]).to(torch.float32)
        sets[split] = FloatSplit(images, torch.tensor([y for _, y in samples], dtype=torch.int64))
    labels = [s.labels for s in sets.values() if isinstance(s, FloatSplit)]
    return sets, count if count is not None else int(torch.cat(labels).max()) + 1


def _made(factory: Any, target: str, split: str, kwargs: dict[str, Any]) -> Dataset | None:
    """factory(split=split, **kwargs), refused in one line unless it is a non-empty map-style Dataset (or None for
    val)."""
    call = f"{KEY}: {target}(split={split!r})"
    try:
        data = factory(split=split, **kwargs)
    except Exception as error:
        raise UserError(f"{call} raised {described(error)}") from None
    if data is None and split == "val":
        return None
    if data is None:
        raise UserError(f"{call} returned None; only split='val' may (val is then carved from train)")
    if isinstance(data, IterableDataset) or not isinstance(data, Dataset):
        raise UserError(f"{call} returned a {type(data).__name__}; expected a map-style torch.utils.data.Dataset "
                        "of (tensor, int) samples")
    try:
        size = len(data)  # type: ignore[arg-type]
    except Exception as error:
        raise UserError(f"{call} returned a {type(data).__name__} without a length ({described(error)}); a "
                        "map-style Dataset needs __len__") from None
    if size == 0:
        raise UserError(f"{call} returned an empty {type(data).__name__}")
    return data


def _classes(data: Dataset, call: str) -> tuple[str, ...] | None:
    """The train dataset's `classes` (torchvision's attribute: label i is classes[i]), or None when it has none."""
    classes = getattr(data, "classes", None)
    if classes is None:
        return None
    if not isinstance(classes, (list, tuple)) or not classes:
        raise UserError(f"{KEY}: {call}.classes is {_kind(classes)}; expected a non-empty list of class names")
    return tuple(str(c) for c in classes)


def _label(y: Any) -> int | None:
    """`y` as an int when it is one (Python's, numpy's, or a 0-d integer tensor), else None."""
    if isinstance(y, torch.Tensor):
        if y.dim() != 0 or y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            return None
        return int(y)
    if isinstance(y, numbers.Integral) and not isinstance(y, bool):
        return int(y)
    return None


def _kind(value: Any) -> str:
    """A value in a message: its type, with the length of a tuple or list."""
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"
