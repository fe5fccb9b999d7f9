"""`dataset=custom`: a user's own Dataset factory, imported from the folder progprune is started in, called once per
split; its splits in memory or streamed give the same batches; a run on it completes, carves val when there is
none and resumes exactly (only with --trust-targets); a bad factory is one line naming the split, before any folder."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import PROGPRUNE, dataset_splits, progprune
from progprune_cli import preflight
from progprune_cli.data import Batches
from progprune_cli.errors import UserError
from test_resume import figures, wait_for_line

# A seeded set of 4 learnable classes (1×8×8 prototypes plus noise); no val split, so progprune carves one.
USER_DATA = '''
"""A user's data module, beside the command."""
import torch
from torch.utils.data import Dataset


class Prototypes(Dataset):
    classes = ["disc", "ring", "bar", "dot"]

    def __init__(self, split, n):
        g = torch.Generator().manual_seed({"train": 1, "test": 2}[split])
        prototypes = torch.rand((4, 1, 8, 8), generator=torch.Generator().manual_seed(0))
        self.labels = [i % 4 for i in range(n)]
        self.inputs = prototypes[self.labels] + 0.4 * torch.randn((n, 1, 8, 8), generator=g)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.inputs[i], self.labels[i]


def make(split, n=96):
    return None if split == "val" else Prototypes(split, n)
'''
RUN = ["dataset=custom", "dataset._target_=userdata.make", "+dataset.n=120", "+strategy=weight", "train.epochs=2",
       "prune.epochs=2", "finetune.epochs=2", "train.batch_size=16", "prune.batch_size=16", "finetune.batch_size=16",
       "checkpoint.every_steps=2", "train.reuse=false", "evaluate.dense_baseline=false", "evaluate.repeats=2",
       "evaluate.warmup=1"]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A whole run on the user's data, in memory, never interrupted."""
    work = tmp_path_factory.mktemp("custom")
    (work / "userdata.py").write_text(USER_DATA)
    done = progprune("train", *RUN, f"hydra.run.dir={work / 'run'}", cwd=work)
    assert done.returncode == 0, done.stderr
    return work / "run"


def test_a_run_on_your_own_dataset_completes_with_val_carved_from_train(reference: Path) -> None:
    assert json.loads((reference / "status.json").read_text())["status"] == "complete"
    # 120 samples (the factory's keyword argument reached it), 10% carved for val by the seeded split.
    assert "train: 2 epochs of the dense two_conv_cnn on custom (108 train samples)" in \
        (reference / "run.log").read_text()
    results = json.loads((reference / "results.json").read_text())
    assert set(results["models"]) == {"original", "pruned", "finetuned"}
    assert results["models"]["original"]["accuracy"]["test"] > 0.5  # learnable: well above 4 classes' 0.25


def test_reading_the_run_back_imports_the_factory_only_when_trusted(reference: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from progprune_cli.export import load_model

    monkeypatch.chdir(reference.parent)  # where userdata.py is, as for the run
    sys.modules.pop("userdata", None)
    with pytest.raises(UserError) as caught:
        load_model(reference, "finetuned")
    assert str(caught.value) == (
        f"RUN_DIR: {reference}: rebuilding its model or data imports userdata.make (a _target_ in the run's config); "
        "load it only if you trust that code: trust_targets=True (progprune export --trust-targets)")
    assert "userdata" not in sys.modules  # refused before anything imported it
    model = load_model(reference, "finetuned", trust_targets=True)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 4)


def test_a_streamed_run_interrupted_and_resumed_equals_the_in_memory_run(reference: Path, tmp_path: Path) -> None:
    """Loader workers reading the same samples in the same seeded order, SIGTERM mid-run, then resume:
    the same metrics and figures as the uninterrupted in-memory run."""
    (tmp_path / "userdata.py").write_text(USER_DATA)
    run_dir = tmp_path / "run"
    streamed = [*RUN, "dataset.in_memory_max_mb=0", "dataset.num_workers=1", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen([PROGPRUNE, "train", *streamed], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    wait_for_line(proc, r"\btrain epoch 1:")  # it stops at the next checkpoint, in whichever stage that is
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out
    assert json.loads((run_dir / "status.json").read_text())["status"] == "interrupted"

    refused = progprune("resume", str(run_dir), cwd=tmp_path)
    assert (refused.returncode, refused.stderr) == (2, (
        f"progprune: error: {run_dir}/.hydra/overrides.yaml: dataset._target_=userdata.make: sets a _target_ (code "
        f"to import: userdata.make); resume takes one from a folder only with --trust-targets (progprune resume "
        f"--trust-targets {run_dir}); nothing was run\n"))
    resumed = progprune("resume", "--trust-targets", str(run_dir), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert re.search(r"\b(train|prune|finetune): resumed from checkpoints/\1\.progress\.pt",
                     (run_dir / "run.log").read_text())
    assert (run_dir / "metrics.csv").read_text() == (reference / "metrics.csv").read_text()
    assert figures(run_dir) == figures(reference)


# --- in this process: the splits, and the bad factories' exact messages ------------------------------------------

@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tmp_path as the folder progprune is started in; sys.path restored after the test."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    return tmp_path


SHAPES = '''
import torch
from torch.utils.data import TensorDataset


def make(split, n, val=False):
    """3×5×6 inputs, labels 0..4, no `classes`: the class count comes from the labels."""
    if split == "val" and not val:
        return None
    g = torch.Generator().manual_seed(len(split))
    return TensorDataset(torch.randn((n, 3, 5, 6), generator=g, dtype=torch.float64), torch.arange(n) % 5)
'''


def _batches(dataset: object) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(Batches(dataset, 2, shuffle=True, seed=3, start=1))  # type: ignore[arg-type]


def test_shapes_and_classes_come_from_the_data_and_streaming_gives_the_same_batches(here: Path) -> None:
    (here / "shapes_data.py").write_text(SHAPES)
    values = {"_target_": "shapes_data.make", "kwargs": {"n": 40}}
    data = dataset_splits("custom", values, seed=0)
    assert (data.info.channels, data.info.height, data.info.width, data.info.num_classes) == (3, 5, 6, 5)
    assert data.info.classes == ("0", "1", "2", "3", "4")
    assert (len(data.train), len(data.val), len(data.test)) == (36, 4, 40)  # val carved: 10% of train
    assert data.train.inputs(None).dtype == torch.float32  # float64 from the factory, as the model computes

    given = dataset_splits("custom", {**values, "kwargs": {"n": 40, "val": True}}, seed=0)
    assert (len(given.train), len(given.val)) == (40, 40)  # the factory's own val split

    # Streamed (it needs `classes` then, so the class count needs no pass over the data) and in memory alike.
    (here / "named_data.py").write_text(SHAPES + "\n\ndef named(split, n):\n    data = make(split, n)\n"
                                        "    if data is not None:\n        data.classes = list('abcde')\n"
                                        "    return data\n")
    named = {"_target_": "named_data.named", "kwargs": {"n": 40}}
    memory, streamed = (dataset_splits("custom", {**named, "in_memory_max_mb": mb, "num_workers": 0}, seed=0)
                        for mb in (1, 0))
    assert streamed.info == memory.info and memory.info.classes == ("a", "b", "c", "d", "e")
    for split in ("train", "val", "test"):
        ours, theirs = _batches(getattr(streamed, split)), _batches(getattr(memory, split))
        assert len(ours) == len(theirs) > 0
        for (x, y), (x2, y2) in zip(ours, theirs):
            assert torch.equal(x, x2) and torch.equal(y, y2)



FLAKY = '''
import torch
from torch.utils.data import Dataset


class Flaky(Dataset):
    classes = ["a", "b"]

    def __init__(self, fault):
        self.fault = fault

    def __len__(self):
        return 12

    def __getitem__(self, i):
        if i == 9 and self.fault == "raises":
            raise OSError("disk gone")
        return torch.zeros(1, 2, 2), 5 if i == 9 else i % 2


def make(split, fault):
    return None if split == "val" else Flaky(fault)
'''


@pytest.mark.parametrize(("fault", "problem"), [("raises", " raised OSError: disk gone"),
                                               ("label", ": the label is 5; the train split's classes name 2 "
                                                         "(labels 0 to 1)")])
def test_a_bad_sample_of_a_streamed_set_stops_it_in_one_line_naming_it(fault: str, problem: str, here: Path) -> None:
    """Only sample 0 of a streamed split is read before the run; a later one fails as its batch is read (in a loader
    worker), in one line naming it."""
    (here / "flaky_data.py").write_text(FLAKY)
    data = dataset_splits("custom", {"_target_": "flaky_data.make", "kwargs": {"fault": fault},
                                     "in_memory_max_mb": 0, "num_workers": 1}, seed=0)
    with pytest.raises(UserError) as caught:
        list(Batches(data.test, 4))
    assert str(caught.value) == f"dataset._target_: flaky_data.make(split='test')[9]{problem}"

BAD = '''
import torch
from torch.utils.data import Dataset, TensorDataset

NOT_CALLABLE = 3


class Samples(Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def good(n=4):
    return Samples([(torch.zeros(1, 4, 4), i % 2) for i in range(n)])


def raises(split):
    raise ValueError(f"no files for {split}")


def a_list(split):
    return [(torch.zeros(1, 4, 4), 0)]


def mixed(split):
    return Samples([(torch.zeros(1, 4, 4), 0)] * 3 + [(torch.zeros(1, 4, 5), 1)])


def mixed_test(split):
    return Samples([(torch.zeros(1, 4, 4 if split != "test" else 3), 0)] * 2)


def named_label(split):
    return Samples([(torch.zeros(1, 4, 4), 0), (torch.zeros(1, 4, 4), "cat")])


def negative(split):
    return good() if split != "test" else Samples([(torch.zeros(1, 4, 4), 0), (torch.zeros(1, 4, 4), -1)])


def no_train(split):
    return None if split == "train" else good()


def unnamed(split):
    return good()


def bytes_(split):
    return TensorDataset(torch.zeros((2, 1, 4, 4), dtype=torch.uint8), torch.zeros(2, dtype=torch.long))
'''
T = "dataset._target_"
BAD_CASES = [
    ("nosuch.make", f"{T}: no module named 'nosuch' (for nosuch.make); put the module in the folder progprune is "
                    "started in or on PYTHONPATH"),
    ("baddata", f"{T}: got 'baddata'; expected a dotted path MODULE.NAME (e.g. mynet.Net, mydata.make)"),
    ("baddata.nosuch", None),  # names the module's file: filled in by the test
    ("baddata.NOT_CALLABLE", f"{T}: baddata.NOT_CALLABLE is not a function or class (found int 3)"),
    ("baddata.raises", f"{T}: baddata.raises(split='train') raised ValueError: no files for train"),
    ("baddata.a_list", f"{T}: baddata.a_list(split='train') returned a list; expected a map-style "
                       "torch.utils.data.Dataset of (tensor, int) samples"),
    ("baddata.no_train", f"{T}: baddata.no_train(split='train') returned None; only split='val' may (val is then "
                         "carved from train)"),
    ("baddata.mixed", f"{T}: baddata.mixed(split='train')[3]: the input has shape (1, 4, 5) but the train split's "
                      "sample 0 has (1, 4, 4); every sample must have one shape"),
    ("baddata.mixed_test", f"{T}: baddata.mixed_test(split='test')[0]: the input has shape (1, 4, 3) but the train "
                           "split's sample 0 has (1, 4, 4); every sample must have one shape"),
    ("baddata.named_label", f"{T}: baddata.named_label(split='train')[1]: the label is 'cat' (str); expected an int "
                            ">= 0"),
    ("baddata.negative", f"{T}: baddata.negative(split='test')[1]: the label is -1 (int); expected an int >= 0"),
    ("baddata.unnamed dataset.in_memory_max_mb=0",
     f"{T}: baddata.unnamed(split='train') has no `classes`, which a set streamed from its Dataset needs (0.0 MB "
     "of float32 inputs; dataset.in_memory_max_mb is 0); give the Dataset a classes list (its class names), or raise "
     "dataset.in_memory_max_mb"),
    ("baddata.bytes_", f"{T}: baddata.bytes_(split='train')[0]: the input is torch.uint8; expected floats as the "
                       "model should see them (e.g. x.float() / 255)"),
]


@pytest.mark.parametrize(("given", "message"), BAD_CASES, ids=[c[0] for c in BAD_CASES])
def test_a_bad_factory_is_one_line_naming_the_split(given: str, message: str | None, here: Path) -> None:
    target, *more = given.split()
    (here / "baddata.py").write_text(BAD)
    sys.modules.pop("baddata", None)  # this test's file, not an earlier test's
    if message is None:
        message = f"{T}: module baddata ({here / 'baddata.py'}) has no 'nosuch'"
    with pytest.raises(UserError) as caught:
        preflight.check(["dataset=custom", f"dataset._target_={target}", *more], multirun=False)
    assert str(caught.value) == message


def test_the_command_says_it_in_one_line_with_exit_2_and_no_folder(tmp_path: Path) -> None:
    (tmp_path / "baddata.py").write_text(BAD)
    done = progprune("train", "dataset=custom", "dataset._target_=baddata.mixed", cwd=tmp_path)
    assert (done.returncode, done.stdout, done.stderr) == (2, "", (
        f"progprune: error: {T}: baddata.mixed(split='train')[3]: the input has shape (1, 4, 5) but the train "
        "split's sample 0 has (1, 4, 4); every sample must have one shape\n"))
    assert not (tmp_path / "runs").exists()


def test_the_factory_keys_and_a_missing_target_are_config_errors(here: Path) -> None:
    with pytest.raises(UserError) as caught:
        preflight.check(["dataset=custom"], multirun=False)
    assert str(caught.value) == f"{T}: missing; it has no default"
    with pytest.raises(UserError) as caught:
        preflight.check(["dataset=custom", "dataset._target_=x.y", "dataset.val_fraction=1.5"], multirun=False)
    assert str(caught.value) == "dataset.val_fraction: got 1.5; must be in (0, 1)"
