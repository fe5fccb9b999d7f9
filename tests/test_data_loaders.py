"""Dataset loaders on tiny files in the real formats (IDX, CIFAR pickles, ImageFolder PNGs): exact behaviour."""

from __future__ import annotations

import gzip
import importlib
import importlib.resources
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch.utils.data import Dataset, Subset, TensorDataset

from progprune_cli.data import DATASETS
from progprune_cli.data.base import Augmented
from progprune_cli.config.strict import from_dict
from progprune_cli.errors import UserError

MNIST_HINT = "download MNIST there (progprune never downloads)"
CIFAR_HINT = "download CIFAR-10 (python version) there (progprune never downloads)"


def error_of(name: str, options: dict, seed: int = 0) -> str:
    with pytest.raises(UserError) as caught:
        DATASETS.get(name)(options, seed)
    return str(caught.value)


def everything(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """All samples of a dataset stacked, in order."""
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))))  # type: ignore[arg-type]
    return torch.stack(xs), torch.tensor(ys)


# ---- MNIST -------------------------------------------------------------------------------------------------

def write_idx(path: Path, array: np.ndarray, magic: int, gz: bool = False) -> Path:
    """An IDX file as on yann.lecun.com: big-endian magic, one uint32 per dimension, then the bytes."""
    raw = struct.pack(">i", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(np.uint8).tobytes()
    path = path.with_name(path.name + ".gz") if gz else path
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def mnist_arrays(n: int, offset: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Image i has pixel (0, 0) = offset + i, so every sample says where it came from."""
    rng = np.random.default_rng(offset)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[:, 0, 0] = offset + np.arange(n)
    return images, (np.arange(n) * 3 + offset) % 10


def write_mnist(folder: Path, n_train: int = 20, n_test: int = 5) -> tuple[np.ndarray, ...]:
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = mnist_arrays(n_train)
    test_x, test_y = mnist_arrays(n_test, offset=100)
    write_idx(folder / "train-images-idx3-ubyte", train_x, 2051, gz=True)  # gzipped and plain files mix freely
    write_idx(folder / "train-labels-idx1-ubyte", train_y, 2049)
    write_idx(folder / "t10k-images-idx3-ubyte", test_x, 2051)
    write_idx(folder / "t10k-labels-idx1-ubyte", test_y, 2049, gz=True)
    return train_x, train_y, test_x, test_y


def test_mnist_reads_idx_exactly_and_splits_by_seed(tmp_path: Path) -> None:
    train_x, train_y, test_x, test_y = write_mnist(tmp_path)
    splits = DATASETS.get("mnist")({"root": str(tmp_path), "val_fraction": 0.25}, 7)
    assert (splits.info.channels, splits.info.height, splits.info.width, splits.info.num_classes) == (1, 28, 28, 10)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (15, 5, 5)
    ids = []
    for part in (splits.train, splits.val):
        x, y = everything(part)
        assert x.shape[1:] == (1, 28, 28) and x.dtype == torch.float32
        idx = (x[:, 0, 0, 0] * 255).round().long()
        assert torch.equal(x[:, 0], torch.from_numpy(train_x[idx.numpy()]).float() / 255)
        assert torch.equal(y, torch.from_numpy(train_y[idx.numpy()]).long())
        ids.append(set(idx.tolist()))
    assert ids[0].isdisjoint(ids[1]) and ids[0] | ids[1] == set(range(20))
    x, y = everything(splits.test)  # test is t10k, in file order
    assert torch.equal(x[:, 0], torch.from_numpy(test_x).float() / 255)
    assert torch.equal(y, torch.from_numpy(test_y).long())
    assert 0.0 <= x.min() and x.max() <= 1.0

    again = DATASETS.get("mnist")({"root": str(tmp_path), "val_fraction": 0.25}, 7)
    other = DATASETS.get("mnist")({"root": str(tmp_path), "val_fraction": 0.25}, 8)
    assert torch.equal(everything(again.val)[0], everything(splits.val)[0])
    assert not torch.equal(everything(other.val)[0], everything(splits.val)[0])


def test_mnist_limit_takes_the_first_training_images(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    splits = DATASETS.get("mnist")({"root": str(tmp_path), "limit": 10}, 0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (9, 1, 5)
    ids = {round(float(x[0, 0, 0]) * 255) for part in (splits.train, splits.val) for x, _ in part}
    assert ids == set(range(10))
    assert error_of("mnist", {"root": str(tmp_path), "limit": 0}) == "dataset.limit: got 0; must be >= 1 or null"
    assert error_of("mnist", {"root": str(tmp_path), "limit": 1}) == (
        "dataset.val_fraction: got 0.1; leaves an empty split of 1 training samples")


def test_mnist_finds_the_torchvision_layout(tmp_path: Path) -> None:
    write_mnist(tmp_path / "MNIST" / "raw")
    splits = DATASETS.get("mnist")({"root": str(tmp_path)}, 0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 2, 5)


def test_mnist_errors_name_the_key_and_path(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    assert error_of("mnist", {"root": str(missing)}) == f"dataset.root: {missing} does not exist; {MNIST_HINT}"
    assert error_of("mnist", {"root": str(tmp_path)}) == (
        f"dataset.root: {tmp_path} has no train-images-idx3-ubyte[.gz]; {MNIST_HINT}")

    write_mnist(tmp_path)
    labels = tmp_path / "train-labels-idx1-ubyte"
    write_idx(labels, np.zeros((20, 28, 28)), 2051)  # an image file under the labels' name
    assert error_of("mnist", {"root": str(tmp_path)}) == (
        f"dataset.root: {labels} has magic number 2051, expected 2049; not an MNIST IDX file")

    images = tmp_path / "train-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(gzip.decompress(images.read_bytes())[:116]))  # header + 100 pixels
    assert error_of("mnist", {"root": str(tmp_path)}) == (
        f"dataset.root: {images} has 100 data bytes, header shape (20, 28, 28); the file is truncated or not MNIST")


def test_mnist_rejects_bad_options(tmp_path: Path) -> None:
    assert error_of("mnist", {"root": str(tmp_path), "val_fraction": 1.0}) == (
        "dataset.val_fraction: got 1.0; must be in (0, 1)")
    assert error_of("mnist", {"roots": "x"}) == (
        "dataset.roots: unknown key; allowed keys are limit, name, root, val_fraction")


# ---- CIFAR-10 ----------------------------------------------------------------------------------------------

BATCHES = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]


def write_cifar(folder: Path, per_batch: int = 4, skip: str = "") -> dict[str, dict]:
    """Pickled dicts with the official byte-string keys; image k of the whole set has data[0] = k."""
    folder.mkdir(parents=True, exist_ok=True)
    rng, batches = np.random.default_rng(0), {}
    for b, name in enumerate(BATCHES):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        data[:, 0] = b * per_batch + np.arange(per_batch)
        batches[name] = {b"batch_label": name.encode(), b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
                         b"data": data, b"filenames": [b"x.png"] * per_batch}
        if name != skip:
            (folder / name).write_bytes(pickle.dumps(batches[name]))
    return batches


def test_cifar10_reads_pickles_exactly_and_augments_train_only(tmp_path: Path) -> None:
    batches = write_cifar(tmp_path / "cifar-10-batches-py")  # root may be the extracted folder's parent
    splits = DATASETS.get("cifar10")({"root": str(tmp_path), "augment": False}, 3)
    assert (splits.info.channels, splits.info.height, splits.info.width, splits.info.num_classes) == (3, 32, 32, 10)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 2, 4)
    all_data = np.concatenate([batches[n][b"data"] for n in BATCHES[:5]])
    all_labels = sum((batches[n][b"labels"] for n in BATCHES[:5]), [])
    ids = []
    for part in (splits.train, splits.val):
        x, y = everything(part)
        idx = (x[:, 0, 0, 0] * 255).round().long().numpy()
        assert torch.equal(x, torch.from_numpy(all_data[idx]).reshape(-1, 3, 32, 32).float() / 255)
        assert y.tolist() == [all_labels[i] for i in idx]
        ids.append(set(idx.tolist()))
    assert ids[0].isdisjoint(ids[1]) and ids[0] | ids[1] == set(range(20))
    x, y = everything(splits.test)
    assert torch.equal(x.reshape(4, 3072), torch.from_numpy(batches["test_batch"][b"data"]).float() / 255)
    assert y.tolist() == batches["test_batch"][b"labels"]

    augmented = DATASETS.get("cifar10")({"root": str(tmp_path)}, 3)
    assert isinstance(augmented.train, Augmented)
    assert isinstance(augmented.val, TensorDataset) and isinstance(augmented.test, TensorDataset)
    torch.manual_seed(0)
    changed = 0
    for i in range(len(augmented.train)):
        (image, label), (original, label0) = augmented.train[i], splits.train[i]
        assert image.shape == (3, 32, 32) and label == label0
        assert is_crop_or_flip(image, original)
        changed += not torch.equal(image, original)
    assert changed > 0


def is_crop_or_flip(image: torch.Tensor, original: torch.Tensor) -> bool:
    """Whether `image` is some 32×32 window of the zero-padded original, maybe mirrored left-right."""
    padded = torch.nn.functional.pad(original, (4, 4, 4, 4))
    windows = (padded[:, dy:dy + 32, dx:dx + 32] for dy in range(9) for dx in range(9))
    return any(torch.equal(image, w) or torch.equal(image, w.flip(-1)) for w in windows)


def test_cifar10_limit(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    splits = DATASETS.get("cifar10")({"root": str(tmp_path), "limit": 6, "val_fraction": 0.5, "augment": False}, 0)
    ids = {round(float(x[0, 0, 0]) * 255) for part in (splits.train, splits.val) for x, _ in part}
    assert (len(splits.train), len(splits.val), ids) == (3, 3, set(range(6)))


def test_cifar10_errors_name_the_missing_batch(tmp_path: Path) -> None:
    write_cifar(tmp_path, skip="data_batch_3")
    assert error_of("cifar10", {"root": str(tmp_path)}) == (
        f"dataset.root: {tmp_path} has no data_batch_3; {CIFAR_HINT}")
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}))
    assert error_of("cifar10", {"root": str(tmp_path)}) == (
        f"dataset.root: {tmp_path / 'data_batch_3'} is not a CIFAR-10 python batch "
        "(needs b'data' uint8 N×3072 and N b'labels' in 0..9)")
    missing = tmp_path / "nowhere"
    assert error_of("cifar10", {"root": str(missing)}) == f"dataset.root: {missing} does not exist; {CIFAR_HINT}"


# ---- ImageFolder -------------------------------------------------------------------------------------------

COLORS = {"cat": (255, 0, 0), "dog": (255, 255, 255)}


def write_images(folder: Path, counts: dict[str, int]) -> None:
    """Solid-colour PNGs of odd sizes: a resize keeps a solid colour exact, so values can be checked exactly."""
    for cls, count in counts.items():
        (folder / cls).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (5 + i, 7), COLORS.get(cls, (0, 0, 255))).save(folder / cls / f"{i}.png")


def test_imagefolder_reads_pngs_and_carves_val(tmp_path: Path) -> None:
    write_images(tmp_path / "train", {"cat": 3, "dog": 3})
    write_images(tmp_path / "test", {"cat": 1, "dog": 2})
    splits = DATASETS.get("imagefolder")({"root": str(tmp_path), "image_size": 8, "val_fraction": 0.5}, 0)
    assert (splits.info.channels, splits.info.height, splits.info.width, splits.info.num_classes) == (3, 8, 8, 2)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3, 3, 3)
    assert isinstance(splits.train, Subset) and isinstance(splits.val, Subset)
    assert set(splits.train.indices).isdisjoint(splits.val.indices)
    assert sorted(splits.train.indices + splits.val.indices) == list(range(6))
    for part in (splits.train, splits.val, splits.test):
        x, y = everything(part)
        assert x.shape[1:] == (3, 8, 8)
        for image, label in zip(x, y):  # labels follow sorted folder names: cat = 0, dog = 1
            colour = torch.tensor(COLORS[["cat", "dog"][label]], dtype=torch.float32) / 255
            assert torch.equal(image, colour.view(3, 1, 1).expand(3, 8, 8))
    again = DATASETS.get("imagefolder")({"root": str(tmp_path), "image_size": 8, "val_fraction": 0.5}, 0)
    assert again.val.indices == splits.val.indices

    gray = DATASETS.get("imagefolder")({"root": str(tmp_path), "grayscale": True}, 0)
    x, y = everything(gray.test)
    assert gray.info.channels == 1 and x.shape == (3, 1, 32, 32)
    assert torch.equal(x[y == 1], torch.ones(2, 1, 32, 32))  # white stays 1.0
    assert 0 < float(x[y == 0].min()) == float(x[y == 0].max()) < 1  # red becomes one grey level


def test_imagefolder_uses_a_val_folder_when_present(tmp_path: Path) -> None:
    for split, n in (("train", 2), ("val", 1), ("test", 1)):
        write_images(tmp_path / split, {"cat": n, "dog": n})
    splits = DATASETS.get("imagefolder")({"root": str(tmp_path)}, 0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (4, 2, 2)


def test_imagefolder_errors(tmp_path: Path) -> None:
    write_images(tmp_path / "train", {"cat": 2, "dog": 2})
    assert error_of("imagefolder", {"root": str(tmp_path)}) == (
        f"dataset.root: {tmp_path} has no test/ folder; put images in train/<class>/ and test/<class>/ there")
    write_images(tmp_path / "test", {"cat": 1, "fox": 1})
    assert error_of("imagefolder", {"root": str(tmp_path)}) == (
        f"dataset.root: {tmp_path / 'test'} has classes cat, fox but {tmp_path / 'train'} has cat, dog; "
        "they must match")
    assert error_of("imagefolder", {"root": str(tmp_path), "image_size": 0}) == (
        "dataset.image_size: got 0; must be >= 1")


# ---- digits, synthetic, and the YAML files -----------------------------------------------------------------

def test_digits_splits_by_fraction_and_seed() -> None:
    splits = DATASETS.get("digits")({}, 0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1258, 270, 269)  # 1,797 images
    assert (splits.info.channels, splits.info.height, splits.info.num_classes) == (1, 8, 10)
    x = splits.train.tensors[0]
    assert 0.0 == float(x.min()) and float(x.max()) == 1.0
    assert torch.equal(DATASETS.get("digits")({}, 0).val.tensors[0], splits.val.tensors[0])
    assert not torch.equal(DATASETS.get("digits")({}, 1).val.tensors[0], splits.val.tensors[0])


def test_synthetic_splits_by_fraction_and_seed() -> None:
    splits = DATASETS.get("synthetic")({"samples": 40, "num_classes": 4}, 5)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (20, 10, 10)
    assert splits.train.tensors[0].shape == (20, 1, 8, 8)
    same, other = DATASETS.get("synthetic")({"samples": 40, "num_classes": 4}, 5), DATASETS.get("synthetic")(
        {"samples": 40, "num_classes": 4}, 6)
    assert all(torch.equal(a, b) for a, b in zip(same.test.tensors, splits.test.tensors))
    assert not torch.equal(other.test.tensors[0], splits.test.tensors[0])


@pytest.mark.parametrize("name", ["digits", "synthetic", "mnist", "cifar10", "imagefolder"])
def test_yaml_matches_registry_and_defaults(name: str) -> None:
    """The shipped YAML is named like its registry key and spells out exactly the loader's defaults."""
    text = (importlib.resources.files("progprune_cli.conf") / "dataset" / f"{name}.yaml").read_text()
    options = yaml.safe_load(text)
    assert options.pop("name") == name and name in DATASETS
    options_cls = importlib.import_module(f"progprune_cli.data.{name}").Options
    assert from_dict(options_cls, options, "dataset") == options_cls()
    assert "???" not in text
