"""Downloads through torchvision without internet: tiny files in the real formats served from 127.0.0.1, the
classes' mirrors and md5s pointed at them; then offline (a closed port, a silent server) fails fast in one line."""

from __future__ import annotations

import functools
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import torch
import torchvision.datasets as tvd

from conftest import component, dataset_splits
from progprune_cli.data import prepare_data
from progprune_cli.data import fetch
from progprune_cli.errors import UserError

from test_data_loaders import IDX_NAMES, md5, write_cifar, write_mnist, write_svhn


class Mirror:
    """A folder served over HTTP on a free local port, counting requests; `stop()` takes it offline."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.requests = folder, []
        mirror = self

        class Handler(SimpleHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:  # quiet: pytest shows stderr on failure only anyway
                mirror.requests.append(self.path)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(folder)))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def mirror(tmp_path: Path) -> Iterator[Mirror]:
    (tmp_path / "mirror").mkdir()
    served = Mirror(tmp_path / "mirror")
    yield served
    served.stop()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_mnist_downloads_from_the_mirror_then_works_offline(tmp_path: Path, mirror: Mirror,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    train_x, _, test_x, test_y = write_mnist(mirror.folder, gz=True)
    monkeypatch.setattr(tvd.MNIST, "mirrors", [mirror.url])
    monkeypatch.setattr(tvd.MNIST, "resources", [(n, md5(mirror.folder / n)) for n, _ in tvd.MNIST.resources])
    root = tmp_path / "data" / "mnist"
    options = {"root": str(root), "mean": [0.0], "std": [1.0]}
    splits = dataset_splits("mnist", options, 0)
    raw = root / "MNIST" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(
        [n for n, _ in tvd.MNIST.resources] + [n.removesuffix(".gz") for n, _ in tvd.MNIST.resources])
    assert torch.equal(splits.test.images[:, 0], torch.from_numpy(test_x))
    assert splits.test.labels.tolist() == test_y.tolist()
    assert len(splits.train) + len(splits.val) == len(train_x)
    assert socket.getdefaulttimeout() is None  # the short timeout was only around the download

    count = len(mirror.requests)
    mirror.stop()
    for cache in (root / ".progprune").iterdir():
        cache.unlink()  # force a decode: the downloaded files themselves are reused, no network needed
    again = dataset_splits("mnist", options, 0)
    assert torch.equal(again.test.images, splits.test.images) and len(mirror.requests) == count


def test_cifar10_downloads_and_extracts_the_archive(tmp_path: Path, mirror: Mirror,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    staging = tmp_path / "staging" / "cifar-10-batches-py"
    batches = write_cifar(staging, monkeypatch)
    archive = mirror.folder / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(staging, arcname="cifar-10-batches-py")
    monkeypatch.setattr(tvd.CIFAR10, "url", mirror.url + "cifar-10-python.tar.gz")
    monkeypatch.setattr(tvd.CIFAR10, "tgz_md5", md5(archive))
    root = tmp_path / "cifar"
    prepare_data(component("dataset", "cifar10", **{"root": str(root)}))  # download + decode, no splits
    assert (root / "cifar-10-batches-py" / "test_batch").is_file()
    assert len(list((root / ".progprune").glob("cifar10-*.pt"))) == 2
    mirror.stop()
    splits = dataset_splits("cifar10", {"root": str(root), "download": False}, 0)
    assert torch.equal(splits.test.images.reshape(4, 3072), torch.from_numpy(batches["test_batch"]["data"]))


def test_svhn_downloads_both_mat_files(tmp_path: Path, mirror: Mirror, monkeypatch: pytest.MonkeyPatch) -> None:
    write_svhn(mirror.folder, monkeypatch)
    monkeypatch.setattr(tvd.SVHN, "split_list", {split: [mirror.url + name, name, digest] for split, (_, name, digest)
                                                 in tvd.SVHN.split_list.items()})
    root = tmp_path / "svhn"
    splits = dataset_splits("svhn", {"root": str(root), "val_fraction": 0.2}, 0)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (8, 2, 4)
    assert sorted(p.name for p in root.glob("*.mat")) == ["test_32x32.mat", "train_32x32.mat"]
    requests = len(mirror.requests)
    dataset_splits("svhn", {"root": str(root)}, 0)  # files present: nothing is fetched again
    assert len(mirror.requests) == requests


def test_offline_fails_fast_in_one_line_naming_folder_and_files(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    port = closed_port()
    monkeypatch.setattr(tvd.MNIST, "mirrors", [f"http://127.0.0.1:{port}/"])
    root = tmp_path / "mnist"
    raw = root / "MNIST" / "raw"
    began = time.monotonic()
    with pytest.raises(UserError) as caught:
        dataset_splits("mnist", {"root": str(root)}, 0)
    message = str(caught.value)
    assert time.monotonic() - began < 5
    assert "\n" not in message
    assert message.startswith(f"dataset.download: could not download MNIST into {raw} (RuntimeError: Error "
                              f"downloading train-images-idx3-ubyte.gz: Tried http://127.0.0.1:{port}/, got: ")
    assert message.endswith(f"); put {IDX_NAMES} (each may be .gz, from http://127.0.0.1:{port}/) in {raw} "
                            f"or in {root}")
    assert socket.getdefaulttimeout() is None


def test_a_silent_server_times_out_in_seconds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A mirror that accepts the connection and never answers: the short socket timeout ends it."""
    monkeypatch.setattr(fetch, "TIMEOUT_S", 0.5)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nobody ever reads or writes
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/cifar-10-python.tar.gz"
        monkeypatch.setattr(tvd.CIFAR10, "url", url)
        root = tmp_path / "cifar"
        began = time.monotonic()
        with pytest.raises(UserError) as caught:
            prepare_data(component("dataset", "cifar10", **{"root": str(root)}))
        assert time.monotonic() - began < 5
    folder = root / "cifar-10-batches-py"
    assert str(caught.value).startswith(f"dataset.download: could not download CIFAR-10 into {folder} (")
    assert "timed out" in str(caught.value) and str(caught.value).endswith(
        f"; extract cifar-10-python.tar.gz ({url}) in {root}, which makes {folder} with data_batch_1, data_batch_2, "
        "data_batch_3, data_batch_4, data_batch_5, test_batch, batches.meta")
