"""Dataset loaders on tiny files in the real formats (IDX, CIFAR pickles, SVHN .mat, ImageFolder PNGs), the decode
cache, and the Batches contract (seeded order, `start`, per-batch augmentation): exact behaviour."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import struct
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd
from PIL import Image
from torch.utils.data import DataLoader, Dataset, TensorDataset

from conftest import component, dataset_splits
from progprune_cli.data import DATASETS, Batches, TensorSplit, inputs, prepare_data, steps_per_epoch
from progprune_cli.data.imagefolder import StreamingSplit
from progprune_cli.data.splits import Augment
from progprune_cli.errors import UserError

PLAIN = {"mean": [0.0], "std": [1.0]}  # inputs = pixel / 255 exactly, so values can be compared with the files
IDX_NAMES = "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte"


def error_of(name: str, options: dict, seed: int = 0) -> str:
    with pytest.raises(UserError) as caught:
        dataset_splits(name, options, seed)
    assert "\n" not in str(caught.value)
    return str(caught.value)


def everything(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    """All samples of a dataset stacked, in order."""
    xs, ys = zip(*(dataset[i] for i in range(len(dataset))))  # type: ignore[arg-type]
    return torch.stack(xs), torch.tensor(ys)


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


# ---- MNIST family --------------------------------------------------------------------------------------------

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


def write_mnist(folder: Path, n_train: int = 20, n_test: int = 5, gz: bool | None = None) -> tuple[np.ndarray, ...]:
    """The four IDX files; by default gzipped and plain files mixed (both are read)."""
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = mnist_arrays(n_train)
    test_x, test_y = mnist_arrays(n_test, offset=100)
    for name, array, magic, mixed in (("train-images-idx3-ubyte", train_x, 2051, True),
                                      ("train-labels-idx1-ubyte", train_y, 2049, False),
                                      ("t10k-images-idx3-ubyte", test_x, 2051, False),
                                      ("t10k-labels-idx1-ubyte", test_y, 2049, True)):
        write_idx(folder / name, array, magic, gz=mixed if gz is None else gz)
    return train_x, train_y, test_x, test_y


def test_mnist_reads_idx_exactly_and_splits_by_seed(tmp_path: Path) -> None:
    train_x, train_y, test_x, test_y = write_mnist(tmp_path)
    options = {"root": str(tmp_path), "val_fraction": 0.25, **PLAIN}
    splits = dataset_splits("mnist", options, 7)
    info = splits.info
    assert (info.channels, info.height, info.width, info.num_classes) == (1, 28, 28, 10)
    assert info.classes == tuple(tvd.MNIST.classes) and info.classes[3] == "3 - three"
    assert (len(splits.train), len(splits.val), len(splits.test)) == (15, 5, 5)
    assert all(isinstance(s, TensorSplit) for s in (splits.train, splits.val, splits.test))
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

    again = dataset_splits("mnist", options, 7)
    other = dataset_splits("mnist", options, 8)
    assert torch.equal(again.val.images, splits.val.images)
    assert not torch.equal(other.val.images, splits.val.images)


def test_normalization_is_exact_on_known_pixels(tmp_path: Path) -> None:
    """Default MNIST statistics: input = (pixel / 255 − 0.1307) / 0.3081 in float32, per pixel."""
    _, _, test_x, _ = write_mnist(tmp_path)
    splits = dataset_splits("mnist", {"root": str(tmp_path)}, 0)
    x = inputs(splits.test)
    expected = (torch.from_numpy(test_x).float().unsqueeze(1) / 255 - torch.tensor(0.1307)) / torch.tensor(0.3081)
    assert torch.equal(x, expected)
    assert float(x[0, 0, 0, 0]) == pytest.approx((100 / 255 - 0.1307) / 0.3081, abs=1e-6)  # pixel (0, 0) = 100
    assert torch.equal(inputs(splits.test, limit=2), expected[:2])
    batch, _ = next(iter(Batches(splits.test, 3)))
    assert torch.equal(batch, expected[:3])


def test_mnist_limit_takes_the_first_training_images(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    splits = dataset_splits("mnist", {"root": str(tmp_path), "limit": 10, **PLAIN}, 0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (9, 1, 5)
    ids = {int(v) for part in (splits.train, splits.val) for v in part.images[:, 0, 0, 0]}
    assert ids == set(range(10))
    assert error_of("mnist", {"root": str(tmp_path), "limit": 0}) == "dataset.limit: got 0; must be >= 1 or null"
    assert error_of("mnist", {"root": str(tmp_path), "limit": 1}) == (
        "dataset.val_fraction: got 0.1; leaves an empty split of 1 training samples")


def test_mnist_family_reads_the_torchvision_layout(tmp_path: Path) -> None:
    for name, folder, classes in (("mnist", "MNIST", tvd.MNIST.classes),
                                  ("fashion_mnist", "FashionMNIST", tvd.FashionMNIST.classes),
                                  ("kmnist", "KMNIST", tvd.KMNIST.classes)):
        _, _, test_x, _ = write_mnist(tmp_path / name / folder / "raw", gz=False)
        splits = dataset_splits(name, {"root": str(tmp_path / name), "download": False, **PLAIN}, 0)
        assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 2, 5)
        assert splits.info.classes == tuple(classes)
        assert torch.equal(splits.test.images[:, 0], torch.from_numpy(test_x))


def test_mnist_missing_files_with_download_off(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    raw = missing / "MNIST" / "raw"
    by_hand = f"put {IDX_NAMES} (each may be .gz, from {tvd.MNIST.mirrors[0]}) in {raw} or in {missing}"
    assert error_of("mnist", {"root": str(missing), "download": False}) == (
        f"dataset.root: {missing} does not exist and dataset.download is false; set it to true, or {by_hand}")
    missing.mkdir()
    assert error_of("mnist", {"root": str(missing), "download": False}) == (
        f"dataset.root: {raw} has no train-images-idx3-ubyte and dataset.download is false; set it to true, "
        f"or {by_hand}")
    write_mnist(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte").unlink()
    raw = tmp_path / "MNIST" / "raw"
    assert error_of("mnist", {"root": str(tmp_path), "download": False}) == (
        f"dataset.root: {raw} has no t10k-images-idx3-ubyte and dataset.download is false; set it to true, or put "
        f"{IDX_NAMES} (each may be .gz, from {tvd.MNIST.mirrors[0]}) in {raw} or in {tmp_path}")


def test_mnist_corrupt_files_name_the_file(tmp_path: Path) -> None:
    write_mnist(tmp_path)
    labels = tmp_path / "train-labels-idx1-ubyte"
    write_idx(labels, np.zeros((20, 28, 28)), 2051)  # an image file under the labels' name
    assert error_of("mnist", {"root": str(tmp_path)}) == (
        f"dataset.root: {labels} is not a readable MNIST IDX label file (ValueError: x should have 1 dimension "
        "instead of 3); delete it and run again with dataset.download=true, or put a good copy there")
    write_idx(labels, np.zeros(20), 2049)

    images = tmp_path / "train-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(gzip.decompress(images.read_bytes())[:116]))  # header + 100 pixels
    message = error_of("mnist", {"root": str(tmp_path)})
    assert message.startswith(f"dataset.root: {images} is not a readable MNIST IDX image file (RuntimeError: ")
    images.write_bytes(b"not gzip at all")
    assert error_of("mnist", {"root": str(tmp_path)}).startswith(
        f"dataset.root: {images} is not a readable MNIST IDX image file (BadGzipFile: ")

    write_mnist(tmp_path)
    write_idx(labels, np.arange(20) + 1, 2049)  # label 20 > 9
    assert error_of("mnist", {"root": str(tmp_path)}) == f"dataset.root: {labels} has label 20; MNIST labels are 0..9"
    write_idx(labels, np.zeros(19), 2049)
    assert error_of("mnist", {"root": str(tmp_path)}) == (
        f"dataset.root: {tmp_path / 'train-images-idx3-ubyte.gz'} has 20 images but {labels} has 19 labels")


def test_unknown_and_bad_options(tmp_path: Path) -> None:
    assert error_of("mnist", {"roots": "x"}) == (
        "dataset.roots: unknown key; allowed keys are download, limit, mean, name, root, std, val_fraction")
    assert error_of("cifar10", {"flip": True}) == (
        "dataset.flip: unknown key; allowed keys are augment, download, limit, mean, name, root, std, val_fraction")
    assert error_of("mnist", {"root": str(tmp_path), "val_fraction": 1.0}) == (
        "dataset.val_fraction: got 1.0; must be in (0, 1)")
    assert error_of("cifar10", {"mean": [0.5, 0.5]}) == (
        "dataset.mean: got [0.5, 0.5]; needs 1 or 3 values (one per channel)")
    assert error_of("mnist", {"std": [0.0]}) == "dataset.std: got [0.0]; every value must be > 0"
    assert error_of("mnist", {"download": "maybe"}) == "dataset.download: got 'maybe'; expected true or false"


# ---- the decode cache ----------------------------------------------------------------------------------------

def test_decode_cache_is_reused_and_read_weights_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mnist(tmp_path)
    first = dataset_splits("mnist", {"root": str(tmp_path)}, 0)
    caches = sorted(p.name for p in (tmp_path / ".progprune").iterdir())
    assert [name.split("-")[:2] for name in caches] == [["mnist", "test"], ["mnist", "train"]]
    mtimes = {p: p.stat().st_mtime_ns for p in (tmp_path / ".progprune").iterdir()}

    loads: list[dict[str, Any]] = []
    real_load = torch.load

    def spy(*args: Any, **kwargs: Any) -> Any:
        loads.append(kwargs)
        return real_load(*args, **kwargs)

    def no_decode(*_: Any) -> None:
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(torch, "load", spy)
    monkeypatch.setattr(tvd.mnist, "read_image_file", no_decode)
    again = dataset_splits("mnist", {"root": str(tmp_path)}, 0)
    assert len(loads) == 2 and all(kw.get("weights_only") is True for kw in loads)
    assert torch.equal(again.train.images, first.train.images) and again.info == first.info
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / ".progprune").iterdir()} == mtimes

    # A changed source file changes the key: decoded again, and the old train cache is dropped.
    monkeypatch.undo()
    train_x, *_ = write_mnist(tmp_path, n_train=24)
    splits = dataset_splits("mnist", {"root": str(tmp_path), **PLAIN}, 0)
    assert len(splits.train) + len(splits.val) == 24
    assert len(list((tmp_path / ".progprune").glob("mnist-train-*.pt"))) == 1

    # A damaged cache is only a miss: decoded and rewritten.
    for path in (tmp_path / ".progprune").iterdir():
        path.write_bytes(b"garbage")
    assert torch.equal(dataset_splits("mnist", {"root": str(tmp_path), **PLAIN}, 0).val.images, splits.val.images)
    assert all(p.stat().st_size > 1000 for p in (tmp_path / ".progprune").iterdir())


def test_prepare_data_decodes_and_checks_without_splits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mnist(tmp_path)
    assert prepare_data(component("dataset", "mnist", **{"root": str(tmp_path)})) is None
    assert len(list((tmp_path / ".progprune").glob("mnist-*.pt"))) == 2
    monkeypatch.setattr(tvd.mnist, "read_image_file", lambda *_: pytest.fail("decoded twice"))
    dataset_splits("mnist", {"root": str(tmp_path)}, 0)  # the build after prepare reads the cache
    with pytest.raises(UserError, match=r"^dataset.root: .* does not exist and dataset.download is false; "):
        prepare_data(component("dataset", "mnist", **{"root": str(tmp_path / "empty"), "download": False}))
    with pytest.raises(UserError, match="^dataset.bogus: unknown key; allowed keys are name, test_fraction, "
                                        "val_fraction$"):
        prepare_data(component("dataset", "digits", **{"bogus": 1}))
    with pytest.raises(UserError, match="^dataset=nope: unknown dataset"):
        prepare_data(component("dataset", "nope"))
    prepare_data(component("dataset", "synthetic"))


# ---- CIFAR ---------------------------------------------------------------------------------------------------

CIFAR10_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]


def write_cifar(folder: Path, monkeypatch: pytest.MonkeyPatch, per_batch: int = 4) -> dict[str, dict]:
    """CIFAR-10 pickles as torchvision reads them (str keys after latin1), plus batches.meta; image k of the whole set
    has data[0] = k. torchvision's expected md5s are pointed at these files."""
    folder.mkdir(parents=True, exist_ok=True)
    rng, batches = np.random.default_rng(0), {}
    for b, name in enumerate([*CIFAR10_TRAIN, "test_batch"]):
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        data[:, 0] = b * per_batch + np.arange(per_batch)
        batches[name] = {"batch_label": name, "labels": [int(v) for v in rng.integers(0, 10, per_batch)],
                         "data": data, "filenames": ["x.png"] * per_batch}
        (folder / name).write_bytes(pickle.dumps(batches[name]))
    names = ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names, "num_vis": 3072}))
    patch_cifar_md5(tvd.CIFAR10, folder, monkeypatch)
    return batches


def patch_cifar_md5(cls: type, folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cls, "train_list", [[n, md5(folder / n)] for n, _ in cls.train_list])
    monkeypatch.setattr(cls, "test_list", [[n, md5(folder / n)] for n, _ in cls.test_list])
    monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5(folder / cls.meta["filename"])})


def test_cifar10_reads_pickles_exactly_and_augments_train_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    batches = write_cifar(tmp_path / "cifar-10-batches-py", monkeypatch)
    splits = dataset_splits("cifar10", {"root": str(tmp_path), "augment": False, **PLAIN}, 3)
    info = splits.info
    assert (info.channels, info.height, info.width, info.num_classes) == (3, 32, 32, 10)
    assert info.classes[:2] == ("plane", "car")
    assert (len(splits.train), len(splits.val), len(splits.test)) == (18, 2, 4)
    all_data = np.concatenate([batches[n]["data"] for n in CIFAR10_TRAIN])
    all_labels = sum((batches[n]["labels"] for n in CIFAR10_TRAIN), [])
    ids = []
    for part in (splits.train, splits.val):
        x, y = everything(part)
        idx = (x[:, 0, 0, 0] * 255).round().long().numpy()
        assert torch.equal(x, torch.from_numpy(all_data[idx]).reshape(-1, 3, 32, 32).float() / 255)
        assert y.tolist() == [all_labels[i] for i in idx]
        ids.append(set(idx.tolist()))
    assert ids[0].isdisjoint(ids[1]) and ids[0] | ids[1] == set(range(20))
    assert torch.equal(splits.test.images.reshape(4, 3072), torch.from_numpy(batches["test_batch"]["data"]))
    assert splits.test.labels.tolist() == batches["test_batch"]["labels"]

    augmented = dataset_splits("cifar10", {"root": str(tmp_path), **PLAIN}, 3)
    assert augmented.train.augment == Augment(padding=4, flip=True)
    assert augmented.val.augment is None and augmented.test.augment is None
    assert augmented.train_eval.augment is None and torch.equal(augmented.train_eval.images, splits.train.images)
    x, y = next(iter(Batches(augmented.train, 18)))
    assert torch.equal(y, splits.train.labels)
    originals = splits.train.images.float() / 255
    assert all(is_crop_or_flip(x[i], originals[i]) for i in range(18))
    assert not torch.equal(x, originals)
    x, _ = next(iter(Batches(augmented.train_eval, 18)))  # train accuracy is measured on the images as they are
    assert torch.equal(x, originals)


def is_crop_or_flip(image: torch.Tensor, original: torch.Tensor, flip: bool = True) -> bool:
    """Whether `image` is some window of the zero-padded original, maybe mirrored left-right."""
    h, w = original.shape[1:]
    padded = torch.nn.functional.pad(original, (4, 4, 4, 4))
    windows = (padded[:, dy:dy + h, dx:dx + w] for dy in range(9) for dx in range(9))
    return any(torch.equal(image, win) or (flip and torch.equal(image, win.flip(-1))) for win in windows)


def test_cifar10_root_may_be_the_extracted_folder_and_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder, monkeypatch)
    splits = dataset_splits("cifar10", {"root": str(folder), "limit": 6, "val_fraction": 0.5, "augment": False}, 0)
    ids = {int(v) for part in (splits.train, splits.val) for v in part.images[:, 0, 0, 0]}
    assert (len(splits.train), len(splits.val), ids) == (3, 3, set(range(6)))


def test_cifar10_errors_name_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flat = tmp_path / "flat"
    write_cifar(flat, monkeypatch)  # the batches directly in root: refused, torchvision reads the extracted folder
    assert error_of("cifar10", {"root": str(flat)}) == (
        f"dataset.root: {flat} holds data_batch_1 itself; torchvision reads the extracted folder: move the files "
        f"into {flat / 'cifar-10-batches-py'}, or set dataset.root to a folder named cifar-10-batches-py")

    folder = tmp_path / "cifar-10-batches-py"
    write_cifar(folder, monkeypatch)
    (folder / "data_batch_3").unlink()
    by_hand = (f"extract cifar-10-python.tar.gz ({tvd.CIFAR10.url}) in {tmp_path}, which makes {folder} with "
               "data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch, batches.meta")
    assert error_of("cifar10", {"root": str(tmp_path), "download": False}) == (
        f"dataset.root: {folder} has no data_batch_3 and dataset.download is false; set it to true, or {by_hand}")
    (folder / "data_batch_3").write_bytes(pickle.dumps({"data": np.zeros((2, 100), np.uint8), "labels": [0, 1]}))
    assert error_of("cifar10", {"root": str(tmp_path)}) == (
        f"dataset.root: {folder / 'data_batch_3'} is corrupt (its md5 is not {tvd.CIFAR10.train_list[2][1]}, "
        f"torchvision's); delete it and run again with dataset.download=true, or {by_hand}")


def test_cifar100_fine_labels_and_classes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(1)
    data = {name: {"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
                   "fine_labels": [int(v) for v in rng.integers(0, 100, n)],
                   "coarse_labels": [0] * n} for name, n in (("train", 10), ("test", 3))}
    for name, entry in data.items():
        (folder / name).write_bytes(pickle.dumps(entry))
    names = [f"class{i:02d}" for i in range(100)]
    (folder / "meta").write_bytes(pickle.dumps({"fine_label_names": names, "coarse_label_names": ["x"] * 20}))
    patch_cifar_md5(tvd.CIFAR100, folder, monkeypatch)
    splits = dataset_splits("cifar100", {"root": str(tmp_path), "val_fraction": 0.2}, 0)
    assert splits.info.num_classes == 100 and splits.info.classes == tuple(names)
    assert (len(splits.train), len(splits.val)) == (8, 2)
    assert torch.equal(splits.test.images.reshape(3, 3072), torch.from_numpy(data["test"]["data"]))
    assert splits.test.labels.tolist() == data["test"]["fine_labels"]
    assert splits.train.augment == Augment(4, True)


# ---- SVHN ----------------------------------------------------------------------------------------------------

def write_svhn(folder: Path, monkeypatch: pytest.MonkeyPatch, sizes: tuple[int, int] = (10, 4)) -> dict[str, Any]:
    """The .mat layout of http://ufldl.stanford.edu/housenumbers/: X (32, 32, 3, N) uint8, y (N, 1) in 1..10."""
    import scipy.io

    folder.mkdir(parents=True, exist_ok=True)
    rng, out, split_list = np.random.default_rng(2), {}, dict(tvd.SVHN.split_list)
    for split, n in zip(("train", "test"), sizes):
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        y = ((np.arange(n) + 7) % 10 + 1).reshape(n, 1).astype(np.uint8)  # 10 means digit 0
        url, name, _ = split_list[split]
        scipy.io.savemat(folder / name, {"X": x, "y": y})
        split_list[split] = [url, name, md5(folder / name)]
        out[split] = (x, y)
    monkeypatch.setattr(tvd.SVHN, "split_list", split_list)
    return out


def test_svhn_reads_mat_and_crops_without_flipping(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = write_svhn(tmp_path, monkeypatch)
    splits = dataset_splits("svhn", {"root": str(tmp_path), "val_fraction": 0.3, **PLAIN}, 0)
    assert splits.info.classes == tuple("0123456789") and (splits.info.channels, splits.info.height) == (3, 32)
    x, y = arrays["test"]
    assert torch.equal(splits.test.images, torch.from_numpy(x).permute(3, 2, 0, 1))  # torchvision's (N, C, H, W)
    assert splits.test.labels.tolist() == [8, 9, 0, 1]  # label 10 is digit 0
    assert splits.train.augment == Augment(padding=4, flip=False)
    batch, _ = next(iter(Batches(splits.train, 64, seed=5)))
    originals = splits.train.images.float() / 255
    assert all(is_crop_or_flip(batch[i], originals[i], flip=False) for i in range(len(batch)))


def test_svhn_missing_and_corrupt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_svhn(tmp_path, monkeypatch)
    (tmp_path / "test_32x32.mat").unlink()
    by_hand = f"download {tvd.SVHN.split_list['train'][0]} and {tvd.SVHN.split_list['test'][0]} into {tmp_path}"
    assert error_of("svhn", {"root": str(tmp_path), "download": False}) == (
        f"dataset.root: {tmp_path} has no test_32x32.mat and dataset.download is false; set it to true, or {by_hand}")
    (tmp_path / "test_32x32.mat").write_bytes(b"MATLAB 5.0 nonsense")
    assert error_of("svhn", {"root": str(tmp_path)}) == (
        f"dataset.root: {tmp_path / 'test_32x32.mat'} is corrupt (its md5 is not {tvd.SVHN.split_list['test'][2]}, "
        f"torchvision's); delete it and run again with dataset.download=true, or {by_hand}")


# ---- ImageFolder ---------------------------------------------------------------------------------------------

COLORS = {"cat": (255, 0, 0), "dog": (255, 255, 255)}


def write_images(folder: Path, counts: dict[str, int]) -> None:
    """Solid-colour PNGs of odd sizes: a resize keeps a solid colour exact, so values can be checked exactly."""
    for cls, count in counts.items():
        (folder / cls).mkdir(parents=True)
        for i in range(count):
            Image.new("RGB", (5 + i, 7), COLORS.get(cls, (0, 0, 255))).save(folder / cls / f"{i}.png")


@pytest.mark.parametrize("memory", [2048, 0], ids=["in-memory", "streaming"])
def test_imagefolder_reads_pngs_and_carves_val(tmp_path: Path, memory: int) -> None:
    write_images(tmp_path / "train", {"cat": 3, "dog": 3})
    write_images(tmp_path / "test", {"cat": 1, "dog": 2})
    options = {"root": str(tmp_path), "image_size": 8, "val_fraction": 0.5, "in_memory_max_mb": memory,
               "num_workers": 0}
    splits = dataset_splits("imagefolder", options, 0)
    assert isinstance(splits.train, TensorSplit if memory else StreamingSplit)
    info = splits.info
    assert (info.channels, info.height, info.width, info.num_classes, info.classes) == (3, 8, 8, 2, ("cat", "dog"))
    assert (len(splits.train), len(splits.val), len(splits.test)) == (3, 3, 3)
    for part in (splits.train, splits.val, splits.test):
        for x, y in (*Batches(part, 2), everything(part)):
            assert x.shape[1:] == (3, 8, 8)
            for image, label in zip(x, y):  # labels follow sorted folder names: cat = 0, dog = 1
                colour = torch.tensor(COLORS[["cat", "dog"][label]], dtype=torch.float32) / 255
                assert torch.equal(image, colour.view(3, 1, 1).expand(3, 8, 8))
    labels = sorted(int(y) for part in (splits.train, splits.val) for _, y in Batches(part, 1))
    assert labels == [0, 0, 0, 1, 1, 1]
    assert (tmp_path / ".progprune").is_dir() == bool(memory)

    gray = dataset_splits("imagefolder", {**options, "grayscale": True, "image_size": 32}, 0)
    x, y = everything(gray.test)
    assert gray.info.channels == 1 and x.shape == (3, 1, 32, 32)
    assert torch.equal(x[y == 1], torch.ones(2, 1, 32, 32))  # white stays 1.0
    assert 0 < float(x[y == 0].min()) == float(x[y == 0].max()) < 1  # red becomes one grey level
    # Other decode settings keep their own cache beside the first (a sweep over them does not thrash).
    assert len(list(tmp_path.glob(".progprune/imagefolder-*.pt"))) == (4 if memory else 0)


def test_imagefolder_streaming_matches_in_memory_batch_for_batch(tmp_path: Path) -> None:
    """Same order, same start, same augmentation: only where the decode happens differs (here with a worker)."""
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 2)):
        for cls in ("a", "b"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / split / cls / f"{i}.png")
    options = {"root": str(tmp_path), "image_size": 8, "num_workers": 0}
    memory = dataset_splits("imagefolder", options, 1).train
    stream = dataset_splits("imagefolder", {**options, "in_memory_max_mb": 0, "num_workers": 1}, 1).train
    augment = Augment(padding=4, flip=True)
    memory, stream = replace(memory, augment=augment), replace(stream, augment=augment)
    for start in (0, 2):
        for (a, ya), (b, yb) in zip(Batches(memory, 5, shuffle=True, seed=9, start=start),
                                    Batches(stream, 5, shuffle=True, seed=9, start=start), strict=True):
            assert torch.equal(a, b) and torch.equal(ya, yb)
    assert len(Batches(stream, 5, start=2)) == 3 and steps_per_epoch(stream, 5) == 5


def test_imagefolder_uses_a_val_folder_when_present(tmp_path: Path) -> None:
    for split, n in (("train", 2), ("val", 1), ("test", 1)):
        write_images(tmp_path / split, {"cat": n, "dog": n})
    splits = dataset_splits("imagefolder", {"root": str(tmp_path), "num_workers": 0}, 0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (4, 2, 2)


@pytest.mark.parametrize("memory", [2048, 0], ids=["in-memory", "streaming"])
def test_imagefolder_errors(tmp_path: Path, memory: int) -> None:
    options = {"root": str(tmp_path), "in_memory_max_mb": memory, "num_workers": 0}
    write_images(tmp_path / "train", {"cat": 2, "dog": 2})
    assert error_of("imagefolder", options) == (
        f"dataset.root: {tmp_path} has no test/ folder; put images in train/<class>/ and test/<class>/ there")
    write_images(tmp_path / "test", {"cat": 1, "fox": 1})
    assert error_of("imagefolder", options) == (
        f"dataset.root: {tmp_path / 'test'} has classes cat, fox but {tmp_path / 'train'} has cat, dog; "
        "they must match")
    assert error_of("imagefolder", {**options, "image_size": 0}) == "dataset.image_size: got 0; must be >= 1"
    assert error_of("imagefolder", {**options, "num_workers": -1}) == "dataset.num_workers: got -1; must be >= 0"
    assert error_of("imagefolder", {**options, "sizes": 3}) == (
        "dataset.sizes: unknown key; allowed keys are augment, grayscale, image_size, in_memory_max_mb, mean, name, "
        "num_workers, root, std, val_fraction")

    (tmp_path / "test" / "fox").rename(tmp_path / "test" / "dog")
    broken = tmp_path / "train" / "dog" / "1.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    def read_all() -> None:
        splits = dataset_splits("imagefolder", {**options, "val_fraction": 0.5}, 0)
        for part in (splits.train, splits.val):
            list(Batches(part, 2))
    with pytest.raises(UserError) as caught:
        read_all()
    assert str(caught.value).startswith(f"dataset.root: {broken} cannot be read as an image (")
    assert str(caught.value).endswith("); fix or remove it") and "\n" not in str(caught.value)


# ---- Batches -------------------------------------------------------------------------------------------------

def augmented_split(n: int = 50) -> TensorSplit:
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return TensorSplit(images, torch.arange(n), (0.5, 0.4, 0.3), (0.2, 0.25, 0.3), Augment(padding=4, flip=True))


def test_batches_order_depends_on_the_seed_alone() -> None:
    split = augmented_split().plain()
    labels = torch.cat([y for _, y in Batches(split, 8, shuffle=True, seed=4)])
    assert torch.equal(labels, torch.randperm(50, generator=torch.Generator().manual_seed(4)))  # as DataLoader would
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(torch.cat([y for _, y in Batches(split, 8, shuffle=True, seed=4)]), labels)
    assert not torch.equal(torch.cat([y for _, y in Batches(split, 8, shuffle=True, seed=5)]), labels)
    assert torch.equal(torch.cat([y for _, y in Batches(split, 8)]), torch.arange(50))
    assert [len(y) for _, y in Batches(split, 8)] == [8] * 6 + [2]


def test_start_yields_exactly_the_tail_of_the_pass_bitwise() -> None:
    split = augmented_split()
    full = list(Batches(split, 8, shuffle=True, seed=11))
    for start in (0, 1, 4, 6, 7, 9):
        batches = Batches(split, 8, shuffle=True, seed=11, start=start)
        assert len(batches) == max(7 - start, 0)
        tail = list(batches)
        assert len(tail) == len(full[start:])
        for (x, y), (fx, fy) in zip(tail, full[start:]):
            assert torch.equal(x, fx) and torch.equal(y, fy)
    again = Batches(split, 8, shuffle=True, seed=11, start=3)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(again, again))  # re-iterable, same every time


def test_augmentation_is_seeded_per_batch_index() -> None:
    split = augmented_split()
    first = next(iter(Batches(split, 10, seed=1)))[0]
    list(Batches(split, 10, seed=2))  # draws elsewhere do not shift it
    torch.manual_seed(99)
    assert torch.equal(next(iter(Batches(split, 10, seed=1)))[0], first)
    assert not torch.equal(next(iter(Batches(split, 10, seed=2)))[0], first)
    # Same images at batch 0 and batch 1 (a repeated dataset): a different index draws different crops.
    twice = TensorSplit(split.images[:10].repeat(2, 1, 1, 1), torch.arange(20), split.mean, split.std, split.augment)
    a, b = (x for x, _ in Batches(twice, 10, seed=1))
    assert not torch.equal(a, b)


def test_augmentation_windows_are_exact_crops_and_flips() -> None:
    split = augmented_split()
    plain = TensorSplit(split.images, split.labels)
    raw = TensorSplit(split.images, split.labels, augment=split.augment)  # mean 0, std 1: pixel / 255 exactly
    originals = everything(plain)[0]
    for (x, y) in Batches(raw, 16, shuffle=True, seed=3):
        assert all(is_crop_or_flip(img, originals[int(label)]) for img, label in zip(x, y))
    x = torch.cat([b for b, _ in Batches(raw, 50, seed=0)])
    assert (x == 0).flatten(1).all(1).sum() == 0  # a crop never leaves only padding
    assert not torch.equal(x, originals)


def test_plain_datasets_keep_the_dataloader_behaviour() -> None:
    data = TensorDataset(torch.randn(30, 1, 4, 4), torch.arange(30))
    ours = list(Batches(data, 7, shuffle=True, seed=6, start=2))
    loader = list(DataLoader(data, batch_size=7, shuffle=True, generator=torch.Generator().manual_seed(6)))[2:]
    assert len(ours) == len(loader) == 3
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(ours, loader))
    assert torch.equal(inputs(data, 3), data.tensors[0][:3])


# ---- digits, synthetic, and the YAML files -------------------------------------------------------------------

def test_digits_splits_by_fraction_and_seed() -> None:
    splits = dataset_splits("digits", {}, 0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (1258, 270, 269)  # 1,797 images
    assert (splits.info.channels, splits.info.height, splits.info.num_classes) == (1, 8, 10)
    assert splits.info.classes == tuple("0123456789")
    x = splits.train.tensors[0]
    assert 0.0 == float(x.min()) and float(x.max()) == 1.0
    assert torch.equal(dataset_splits("digits", {}, 0).val.tensors[0], splits.val.tensors[0])
    assert not torch.equal(dataset_splits("digits", {}, 1).val.tensors[0], splits.val.tensors[0])


def test_synthetic_splits_by_fraction_and_seed() -> None:
    splits = dataset_splits("synthetic", {"samples": 40, "num_classes": 4}, 5)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (20, 10, 10)
    assert splits.train.tensors[0].shape == (20, 1, 8, 8) and splits.info.classes == ("0", "1", "2", "3")
    same = dataset_splits("synthetic", {"samples": 40, "num_classes": 4}, 5)
    other = dataset_splits("synthetic", {"samples": 40, "num_classes": 4}, 6)
    assert all(torch.equal(a, b) for a, b in zip(same.test.tensors, splits.test.tensors))
    assert not torch.equal(other.test.tensors[0], splits.test.tensors[0])


NAMES = ["digits", "synthetic", "mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100", "svhn", "imagefolder",
         "custom", "text"]


def test_every_dataset_is_registered() -> None:
    assert DATASETS.names() == sorted(NAMES)


def test_imagefolder_augment_crops_and_flips_training_images_only(tmp_path: Path) -> None:
    write_images(tmp_path / "train", {"cat": 4, "dog": 4})
    write_images(tmp_path / "test", {"cat": 2, "dog": 2})
    options = {"root": str(tmp_path), "image_size": 8, "val_fraction": 0.25, "num_workers": 0}
    plain = dataset_splits("imagefolder", options, 0)
    augmented = dataset_splits("imagefolder", {**options, "augment": True}, 0)
    a = next(iter(Batches(plain.train, 6, shuffle=True, seed=1)))[0]
    b = next(iter(Batches(augmented.train, 6, shuffle=True, seed=1)))[0]
    assert a.shape == b.shape and not torch.equal(a, b)  # zero-padded crops of solid colours
    for split in ("train_eval", "val", "test"):
        assert torch.equal(everything(getattr(augmented, split))[0], everything(getattr(plain, split))[0]), split


def test_a_training_pass_leaves_out_a_last_batch_of_one_sample() -> None:
    """Batch-norm cannot train on one sample; evaluation still sees every sample."""
    data = TensorDataset(torch.arange(9.0).view(9, 1), torch.zeros(9, dtype=torch.long))
    assert steps_per_epoch(data, 4) == 2 and steps_per_epoch(data, 3) == 3 and steps_per_epoch(data, 20) == 1
    shuffled = list(Batches(data, 4, shuffle=True, seed=0))
    assert [len(y) for _, y in shuffled] == [4, 4] and len(Batches(data, 4, shuffle=True)) == 2
    assert [len(y) for _, y in Batches(data, 4)] == [4, 4, 1] and len(Batches(data, 4)) == 3
    assert [len(y) for _, y in Batches(data, 4, shuffle=True, seed=0, start=1)] == [4]
