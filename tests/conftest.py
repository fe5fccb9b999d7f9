"""Shared test helpers: the installed `progprune` command and a tiny, fast experiment config."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

PROGPRUNE = str(Path(sys.executable).parent / "progprune")

# The real conf/ shrunk: synthetic data, one epoch per stage, few timing repeats.
TINY = ["dataset=synthetic", "train.epochs=1", "prune.epochs=2", "finetune.epochs=1",
        "evaluate.repeats=2", "evaluate.warmup=1"]


def progprune(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run the installed command as a user would, capturing its output."""
    return subprocess.run([PROGPRUNE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty folder to run in: runs/ and the dense cache land here."""
    return tmp_path


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread for the test, restored after it."""
    # Tracing runs many one-sample forward passes; on a busy machine extra threads only add wake-up latency.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
