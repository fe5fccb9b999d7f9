"""Search with Optuna (hydra/sweeper=progprune_optuna): each trial returns search.objectives read from its
results.json, a diverged trial is a failed trial (not a score), the summary names the objectives' Pareto front, and
bad objectives or directions are one line before any folder exists."""

from __future__ import annotations

import csv
import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import TINY, progprune, refused
from progprune_cli.config.overrides import candidates, parse
from progprune_cli.config.search import OBJECTIVE_NAMES, Objective, parse_objectives
from progprune_cli.errors import UserError
from progprune_cli.preflight import check_directions, check_study_storage, require_optuna
from progprune_cli.report.summary import pareto_front
from progprune_cli.results.objectives import READERS

SQLALCHEMY_2 = int(version("sqlalchemy").split(".")[0]) >= 2
OBJECTIVES = "search.objectives=[val_accuracy:max,macs:min]"
SEARCH = ["train", "-m", "hydra/sweeper=progprune_optuna", "hydra.sweeper.n_trials=4", "hydra/sweeper/sampler=random",
          OBJECTIVES, "+strategy=weight", "strategy.sparsity=interval(0.3,0.9)", *TINY, "evaluate.dense_baseline=false"]
# lr 1e20 diverges in the first dense epoch (the sampler's seed 0 draws it for some of the 4 trials, not all).
DIVERGING = "optimizer.lr=choice(0.001,1e20)"


def _results(job: Path) -> dict[str, Any]:
    return json.loads((job / "results.json").read_text())


def _objectives(results: dict[str, Any]) -> list[float]:
    """val_accuracy and macs of the final model, read from results.json by hand (not through objectives.py)."""
    final = results["models"]["finetuned"]
    return [final["accuracy"]["val"], float(final["macs"]["effective"])]


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    work = tmp_path_factory.mktemp("search")
    # The preset's SQLite study where optuna can keep one (SQLAlchemy < 2, as the search extra pins), else in memory.
    storage = ["hydra.sweeper.storage=null"] if SQLALCHEMY_2 else []
    done = progprune(*SEARCH, DIVERGING, *storage, "hydra.sweep.dir=runs/search", cwd=work)
    return work / "runs" / "search", done


@pytest.mark.slow
def test_each_trial_returns_its_objectives_and_a_diverged_one_fails(search: tuple[Path, Any]) -> None:
    sweep, done = search
    assert done.returncode == 0, done.stderr
    jobs = sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    assert [j.name for j in jobs] == ["0", "1", "2", "3"]
    complete = [j for j in jobs if (j / "results.json").exists()]
    failed = [j for j in jobs if j not in complete]
    assert complete and failed  # seed 0 draws both learning rates
    for job in failed:
        status = json.loads((job / "status.json").read_text())
        assert status["status"] == "failed" and "diverged" in status["error"]
    # The sweeper recorded each diverged trial as failed (its warning), not as a value.
    assert done.stderr.count("Failed experiment: progprune: a sweep job failed (") == len(failed)
    rows = {row["job"]: row for row in csv.DictReader((sweep / "summary.csv").open())}
    values = {j.name: _objectives(_results(j)) for j in complete}
    for name, (val, macs) in values.items():
        assert (float(rows[name]["val_accuracy"]), float(rows[name]["macs"])) == (val, macs)
    for job in failed:
        assert (rows[job.name]["val_accuracy"], rows[job.name]["pareto_objectives"]) == ("", "")
    # Optuna's own Pareto front (its best_trials, from the values the jobs returned) is the summary's.
    ours = {name for name, row in rows.items() if row["pareto_objectives"] == "true"}
    solutions = yaml.safe_load((sweep / "optimization_results.yaml").read_text())["solutions"]
    sparsity = {j.name: _results(j)["config"]["strategy"]["sparsity"] for j in complete}
    assert sorted((s["params"]["strategy.sparsity"], s["values"]) for s in solutions) == \
        sorted((sparsity[name], values[name]) for name in ours)
    expected_front = pareto_front([tuple(values[j.name]) for j in complete], (True, False))
    assert ours == {j.name for j, on in zip(complete, expected_front) if on}
    summary = (sweep / "summary.md").read_text()
    named = "; ".join(f"job {n} (val_accuracy {values[n][0]:.4f}, macs {values[n][1]:.4g})"
                      for n in sorted(ours, key=int))
    assert f"Objectives val_accuracy:max, macs:min. Pareto front of the objectives ({len(ours)} of 4 jobs; " in summary
    assert named in summary


@pytest.mark.slow
def test_resume_refuses_a_search_in_one_line(search: tuple[Path, Any]) -> None:
    sweep, _ = search
    done = progprune("resume", str(sweep), cwd=sweep.parent.parent)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (f"progprune: error: {sweep}: an Optuna search (hydra/sweeper=progprune_optuna); resume "
                           f"continues grid sweeps only: resume an unfinished trial's run with progprune resume "
                           f"{sweep}/N, or start the search again\n")


def test_a_bad_objective_is_one_line_and_no_folder(tmp_path: Path) -> None:
    done = progprune("train", "-m", "hydra/sweeper=progprune_optuna", "search.objectives=[val_accuracy:max,speed:max]",
                     "+strategy=weight", "strategy.sparsity=interval(0.3,0.9)", *TINY, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("progprune: error: search.objectives[1]: got 'speed:max'; expected NAME:max or NAME:min "
                           "with NAME one of test_accuracy, val_accuracy, latency_ms, macs, params, sparsity\n")
    assert list(tmp_path.iterdir()) == []


def test_a_direction_that_does_not_match_the_objectives_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    err = refused("train", "-m", "hydra/sweeper=progprune_optuna", "hydra.sweeper.direction=[maximize]",
                  OBJECTIVES, "+strategy=weight", "strategy.sparsity=interval(0.3,0.9)", *TINY,
                  cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert err == ("progprune: error: hydra.sweeper.direction: got [maximize]; search.objectives [val_accuracy:max, "
                   "macs:min] needs [maximize, minimize] (one per objective, in order; hydra/sweeper=progprune_optuna "
                   "sets it from search.objectives)\n")
    # The plugin's own preset minimizes by default: refused too, for the default objective val_accuracy:max.
    err = refused("train", "-m", "hydra/sweeper=optuna", "+strategy=weight", "strategy.sparsity=interval(0.3,0.9)",
                  *TINY, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert err.startswith("progprune: error: hydra.sweeper.direction: got [minimize]; search.objectives "
                          "[val_accuracy:max] needs [maximize]")
    # An interval's end is checked before any folder exists, like a grid value.
    err = refused("train", "-m", "hydra/sweeper=progprune_optuna", "+strategy=weight",
                  "strategy.sparsity=interval(0.3,1.0)", *TINY, cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert err == "progprune: error: strategy.sparsity: got 1.0; must be in [0, 1)\n"
    assert list(tmp_path.iterdir()) == []


def test_the_preset_keeps_the_study_in_the_sweep_folder_and_follows_the_objectives(tmp_path: Path) -> None:
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    with initialize_config_module(config_module="progprune_cli.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=["hydra/sweeper=progprune_optuna", OBJECTIVES,
                                                       f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                      return_hydra_config=True)
    sweeper = OmegaConf.to_container(cfg.hydra.sweeper, resolve=True)
    assert sweeper["_target_"] == "hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"
    assert (sweeper["study_name"], sweeper["n_trials"], sweeper["n_jobs"], sweeper["max_failure_rate"]) == \
        ("progprune", 20, 1, 1.0)
    assert sweeper["direction"] == ["maximize", "minimize"]
    assert (sweeper["sampler"]["_target_"], sweeper["sampler"]["seed"]) == ("optuna.samplers.TPESampler", 0)
    # The sweeper opens the study before Hydra makes the sweep folder: resolving the storage makes it.
    assert sweeper["storage"] == f"sqlite:///{tmp_path / 'sweep' / 'optuna.db'}"
    assert (tmp_path / "sweep").is_dir()


def test_directions_and_storage_checks() -> None:
    check_directions("${progprune_directions:${search.objectives}}", ["val_accuracy:max", "macs:min"])
    check_directions(["maximize", "minimize"], ["val_accuracy:max", "macs:min"])
    check_directions("minimize", ["latency_ms:min"])
    with pytest.raises(UserError, match=r"^hydra.sweeper.direction: got \[minimize, maximize\]"):
        check_directions(["minimize", "maximize"], ["val_accuracy:max", "macs:min"])
    versions = {"optuna": "2.10.1", "sqlalchemy": "2.1.9"}
    with pytest.raises(UserError, match=r"^hydra.sweeper.storage: optuna 2.10.1 keeps a study in SQLite only with "
                                        r"SQLAlchemy < 2 \(installed: 2.1.9\)"):
        check_study_storage("${progprune_study_storage:${hydra.sweep.dir}}", versions.__getitem__)
    check_study_storage(None, versions.__getitem__)
    check_study_storage("sqlite:///x.db", {"optuna": "2.10.1", "sqlalchemy": "1.4.54"}.__getitem__)
    check_study_storage("sqlite:///x.db", {"optuna": "3.6.0", "sqlalchemy": "2.1.9"}.__getitem__)
    require_optuna()  # installed here
    with pytest.raises(UserError, match=r"^hydra/sweeper: a search needs hydra-optuna-sweeper, which is not "
                                        r"installed: pip install -e '\.\[search\]' \(make installs it\)$"):
        require_optuna(lambda name: None)


def test_objectives_parse_and_pareto_front_in_any_dimension() -> None:
    assert tuple(READERS) == OBJECTIVE_NAMES  # every name the config accepts is read from results.json
    assert parse_objectives(["val_accuracy:max", "latency_ms:min"]) == \
        [Objective("val_accuracy", True), Objective("latency_ms", False)]
    with pytest.raises(UserError, match=r"^search.objectives\[0\]: got 'val_accuracy'; expected NAME:max"):
        parse_objectives(["val_accuracy"])
    with pytest.raises(UserError, match="named twice"):
        parse_objectives(["macs:min", "macs:max"])
    # (accuracy max, latency min, params min): c is dominated by a; d has no values; b and e trade off.
    points = [(0.9, 2.0, 100.0), (0.8, 1.0, 100.0), (0.85, 2.5, 120.0), None, (0.9, 2.0, 90.0)]
    assert pareto_front(points, (True, False, False)) == [False, True, False, False, True]


def test_search_candidates_hold_every_choice_and_both_interval_ends() -> None:
    found = candidates(parse(["+strategy=weight,structured", "strategy.sparsity=interval(0.3,0.9)",
                              "finetune.epochs=range(1,4)", "seed=0"]))
    assert found == [["+strategy=weight", "strategy.sparsity=0.3", "finetune.epochs=1", "seed=0"],
                     ["+strategy=structured", "strategy.sparsity=0.3", "finetune.epochs=1", "seed=0"],
                     ["+strategy=weight", "strategy.sparsity=0.9", "finetune.epochs=1", "seed=0"],
                     ["+strategy=weight", "strategy.sparsity=0.3", "finetune.epochs=4", "seed=0"]]


@pytest.mark.slow
@pytest.mark.skipif(SQLALCHEMY_2, reason="optuna 2.x keeps a study in SQLite only with SQLAlchemy < 2 (the search "
                                         "extra pins it); this venv has SQLAlchemy >= 2")
def test_the_study_file_holds_every_trial_with_the_values_of_its_run(search: tuple[Path, Any]) -> None:
    import optuna

    sweep, done = search
    assert done.returncode == 0, done.stderr
    study = optuna.load_study(study_name="progprune", storage=f"sqlite:///{sweep / 'optuna.db'}")
    trials = sorted(study.trials, key=lambda t: t.number)
    assert [t.number for t in trials] == [0, 1, 2, 3]
    for trial in trials:
        job = sweep / str(trial.number)
        if (job / "results.json").exists():
            assert (trial.state, trial.values) == (optuna.trial.TrialState.COMPLETE, _objectives(_results(job)))
        else:  # diverged: a failed trial, no value
            assert (trial.state, trial.values) == (optuna.trial.TrialState.FAIL, None)


@pytest.mark.skipif(not SQLALCHEMY_2, reason="with SQLAlchemy < 2 the SQLite study works (the test above)")
def test_the_sqlite_study_is_refused_in_one_line_where_optuna_cannot_keep_it(tmp_path: Path) -> None:
    done = progprune(*SEARCH, "hydra.sweep.dir=runs/search", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("progprune: error: hydra.sweeper.storage: optuna ")
    assert done.stderr.count("\n") == 1 and list(tmp_path.iterdir()) == []
