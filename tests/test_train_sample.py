"""evaluate.train_samples: the train figures of every model come from the same seeded sample of the training split,
and the tables say so; val and test always use every sample."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from progprune_cli.data import TensorSplit, sample_of
from progprune_cli.report.tables import accuracy_table
from progprune_cli.results.schema import SCHEMA_VERSION, Results


def test_a_seeded_sample_in_index_order_the_same_every_time() -> None:
    data = TensorDataset(torch.arange(10).float(), torch.arange(10))
    picked = sample_of(data, 4, seed=3)
    expected = torch.randperm(10, generator=torch.Generator().manual_seed(3))[:4].sort().values.tolist()
    assert [int(picked[i][1]) for i in range(4)] == expected
    assert [int(sample_of(data, 4, seed=3)[i][1]) for i in range(4)] == expected
    assert sample_of(data, None, seed=3) is data and sample_of(data, 10, seed=3) is data


def test_an_in_memory_split_stays_one() -> None:
    split = TensorSplit(torch.zeros(6, 1, 2, 2, dtype=torch.uint8), torch.arange(6), (0.0,), (1.0,))
    picked = sample_of(split, 2, seed=0)
    assert isinstance(picked, TensorSplit) and len(picked) == 2


def test_the_tables_say_where_train_figures_come_from() -> None:
    def table(evaluated: int | None) -> list[str]:
        run = {"train_samples": 5040, **({"train_eval_samples": evaluated} if evaluated is not None else {})}
        return accuracy_table(Results.from_json({"schema_version": SCHEMA_VERSION, "run": run})).footnotes

    assert table(2048) == ["train figures on 2,048 of the 5,040 training samples (seeded, the same for every model; "
                           "evaluate.train_samples); val and test on every sample"]
    assert table(5040) == [] and table(None) == []  # every sample, or a file from before the key
