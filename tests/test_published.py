"""The "vs published" table: reached, missed by how much, or not comparable (and why), exactly."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from run_fixture import make_run
from progprune_cli.report.published import published_table
from progprune_cli.results.schema import Results

FIGURES = [
    {"source": "Han et al. 2015", "metric": "test_error", "model": "finetuned", "value": 0.06, "tolerance": 0.005,
     "dataset": "digits"},
    {"source": "Han et al. 2015", "metric": "test_accuracy", "model": "original", "value": 0.99,
     "tolerance": 0.01, "dataset": "digits"},
    {"source": "a paper", "metric": "weights_kept", "model": "finetuned", "value": 0.5, "tolerance": 0.0,
     "note": "fraction of weights left"},
    {"source": "a CIFAR paper", "metric": "test_accuracy", "model": "finetuned", "value": 0.93, "dataset": "cifar10"},
    {"source": "a long recipe", "metric": "test_accuracy", "model": "finetuned", "value": 0.9, "dataset": "digits",
     "train_epochs": 160},
    {"source": "channels", "metric": "macs_reduction", "model": "compacted", "value": 2.0},
]


def results(tmp_path: Path, **config: object) -> Results:
    run = make_run(tmp_path / "run", config={"expected": FIGURES, **config}, finetuned_acc=0.95)
    return Results.from_json(json.loads((run / "results.json").read_text()))


def test_each_figure_gets_its_verdict(tmp_path: Path) -> None:
    table = published_table(results(tmp_path))
    assert table is not None and table.title == "vs published"
    assert [row[3:] for row in table.rows] == [
        ["6.00% ± 0.50%", "6.00%", "reached"],  # test accuracy 0.94 → 6% error, at the published figure
        ["99.00% ± 1.00%", "95.00%", "missed by 3.00 points"],  # original test 0.95 vs 0.98 at the low end
        ["50.00%", "50.00%", "reached"],
        ["93.00%", "94.00%", "not comparable: other data (digits, the figure is on cifar10)"],
        ["90.00%", "94.00%", "not comparable: fewer epochs (10 of the recipe's 160 dense epochs)"],
        ["2×", "—", "not comparable (no compacted model in this run)"],
    ]
    assert table.footnotes == ["a paper: fraction of weights left"]


def test_a_subset_of_the_data_is_not_comparable(tmp_path: Path) -> None:
    table = published_table(results(tmp_path, **{"dataset.limit": 500}))
    assert table is not None
    assert table.rows[0][5] == "not comparable: other data (dataset.limit=500 of the training set)"


def test_no_expected_figures_no_table(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    assert published_table(Results.from_json(json.loads((run / "results.json").read_text()))) is None


def trained_on(tmp_path: Path, samples: int) -> Results:
    """A run holding one figure that assumes 54,000 training images, which trained on `samples`."""
    figure = {"source": "Han et al. 2015", "metric": "test_error", "model": "finetuned", "value": 0.06,
              "tolerance": 0.005, "dataset": "digits", "train_size": 54000}
    run = make_run(tmp_path / "run", config={"expected": [figure]}, finetuned_acc=0.95)
    record = Results.from_json(json.loads((run / "results.json").read_text()))
    return dataclasses.replace(record, run=dataclasses.replace(record.run, train_samples=samples))


def test_a_run_on_fewer_training_images_than_the_figure_assumes_is_not_comparable(tmp_path: Path) -> None:
    table = published_table(trained_on(tmp_path, 7200))
    assert table is not None
    assert table.rows[0][3:] == ["6.00% ± 0.50%", "6.00%",
                                 "not comparable: trained on 7,200 images; the figure assumes 54,000"]


def test_a_run_on_as_many_training_images_is_compared(tmp_path: Path) -> None:
    table = published_table(trained_on(tmp_path, 54000))
    assert table is not None and table.rows[0][5] == "reached"


def test_a_results_file_without_train_samples_is_compared_as_before(tmp_path: Path) -> None:
    doc = json.loads(trained_on(tmp_path, 7200).dumps())
    del doc["run"]["train_samples"]  # as an older results.json (same schema_version) has it
    table = published_table(Results.from_json(doc))
    assert table is not None and table.rows[0][5] == "reached"


def test_train_samples_round_trips_through_results_json(tmp_path: Path) -> None:
    record = trained_on(tmp_path, 7200)
    assert Results.from_json(json.loads(record.dumps()), strict=True).run.train_samples == 7200
