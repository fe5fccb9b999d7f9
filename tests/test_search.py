"""Search with Optuna (hydra/sweeper=progprune_optuna): each trial returns search.objectives read from its
results.json, a diverged trial is a failed trial (not a score), the summary names the objectives' Pareto front, and
bad objectives or directions are one line before any folder exists."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
from importlib.metadata import version
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import PROGPRUNE, TINY, progprune, refused
from progprune_cli.config.overrides import candidates, parse
from progprune_cli.config.search import OBJECTIVE_NAMES, Objective, parse_objectives
from progprune_cli.errors import UserError
from progprune_cli.preflight import check_directions, check_study_storage, require_optuna
from progprune_cli.report.summary import pareto_front
from progprune_cli.results.objectives import READERS
from progprune_cli.resume import resume
from test_resume import wait_for_line

SQLALCHEMY_2 = int(version("sqlalchemy").split(".")[0]) >= 2
OBJECTIVES = "search.objectives=[val_accuracy:max,macs:min]"
SEARCH = ["train", "-m", "hydra/sweeper=progprune_optuna", "hydra.sweeper.n_trials=4", "hydra/sweeper/sampler=random",
          OBJECTIVES, "+strategy=weight", "strategy.sparsity=interval(0.3,0.9)", *TINY, "evaluate.dense_baseline=false"]
# lr 1e20 diverges in the first dense epoch (the sampler draws it for some of the 4 trials, not all).
DIVERGING = "optimizer.lr=choice(0.001,1e20)"
SEED = "hydra.sweeper.sampler.seed=3"


def _results(job: Path) -> dict[str, Any]:
    return json.loads((job / "results.json").read_text())


def _objectives(results: dict[str, Any]) -> list[float]:
    """val_accuracy and macs of the final model, read from results.json by hand (not through objectives.py)."""
    final = results["models"]["finetuned"]
    return [final["accuracy"]["val"], float(final["macs"]["effective"])]


@dataclass
class Searched:
    """The fixture's search: its folder, the output of the search command and of `progprune resume` (None where it
    was not killed), and what the kill left: each trial's state and sparsity, and the finished jobs' files."""

    sweep: Path
    output: str
    resumed: subprocess.CompletedProcess | None = None
    before: list[tuple[str, float]] = field(default_factory=list)
    kept: dict[str, dict[str, tuple[int, bytes]]] = field(default_factory=dict)

    def stderr(self) -> str:
        return self.output + (self.resumed.stderr if self.resumed is not None else "")


def _files(job: Path) -> dict[str, tuple[int, bytes]]:
    """Every file of a job folder: its modification time and bytes."""
    return {p.relative_to(job).as_posix(): (p.stat().st_mtime_ns, p.read_bytes())
            for p in job.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory) -> Searched:
    """A 4-trial search killed while its third trial runs (trial 0 complete, trial 1 diverged: sampler seed 3 draws
    lr 0.001, 1e20, 0.001), then resumed: every test below reads the resumed search. Where optuna cannot keep a
    SQLite study (SQLAlchemy >= 2) it runs in memory, to the end, unkilled."""
    work = tmp_path_factory.mktemp("search")
    sweep, args = work / "runs" / "search", [*SEARCH, DIVERGING, SEED, "hydra.sweep.dir=runs/search"]
    if SQLALCHEMY_2:
        done = progprune(*args, "hydra.sweeper.storage=null", cwd=work)
        assert done.returncode == 0, done.stderr
        return Searched(sweep, done.stderr)
    import optuna

    proc = subprocess.Popen([PROGPRUNE, *args], cwd=work, text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    seen = wait_for_line(proc, "^sweep summary:") + wait_for_line(proc, "^sweep summary:")  # trials 0 and 1 told
    seen += wait_for_line(proc, r"^\[[\d:]+\] train")  # trial 2 is in its stages
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 143, out
    study = optuna.load_study(study_name="progprune", storage=f"sqlite:///{sweep / 'optuna.db'}")
    before = [(t.state.name, t.params["strategy.sparsity"]) for t in study.trials]
    kept = {job: _files(sweep / job) for job in ("0", "1")}
    resumed = progprune("resume", str(sweep), cwd=work)
    assert resumed.returncode == 0, resumed.stderr
    return Searched(sweep, "".join(seen) + out, resumed, before, kept)


@pytest.mark.slow
def test_each_trial_returns_its_objectives_and_a_diverged_one_fails(search: Searched) -> None:
    sweep = search.sweep
    jobs = sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    assert [j.name for j in jobs] == ["0", "1", "2", "3"]
    complete = [j for j in jobs if (j / "results.json").exists()]
    failed = [j for j in jobs if j not in complete]
    assert complete and failed  # seed 3 draws both learning rates
    for job in failed:
        status = json.loads((job / "status.json").read_text())
        assert status["status"] == "failed" and "diverged" in status["error"]
    # The sweeper (or resume, for the trials it ran) recorded each diverged trial as failed, not as a value.
    assert search.stderr().count("Failed experiment: progprune: a sweep job failed (") + \
        search.stderr().count(" failed (its run ") == len(failed)
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
@pytest.mark.skipif(SQLALCHEMY_2, reason="a search keeps its study in SQLite only with SQLAlchemy < 2")
def test_a_killed_search_resumes_to_n_trials_in_its_study(search: Searched,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """Killed while its third trial ran, the search resumed: the two finished trials stay as they were (their
    folders untouched), the third's run is resumed and told, and a fourth is sampled without repeating one."""
    import optuna

    sweep, resumed = search.sweep, search.resumed
    assert resumed is not None
    assert [state for state, _ in search.before] == ["COMPLETE", "FAIL", "RUNNING"]
    assert json.loads((sweep / "2" / "status.json").read_text())["status"] == "complete"
    assert resumed.stdout.startswith(f"progprune: resuming the search {sweep}: 2 of 4 trials finished, 1 interrupted; "
                                     "the RandomSampler continues with seed ")
    assert f"progprune: resuming {sweep / '2'} (was interrupted in " in resumed.stdout
    assert {job: _files(sweep / job) for job in ("0", "1")} == search.kept
    trials = optuna.load_study(study_name="progprune", storage=f"sqlite:///{sweep / 'optuna.db'}").trials
    assert [t.number for t in trials] == [0, 1, 2, 3] and all(t.state.is_finished() for t in trials)
    assert (trials[2].state.name, trials[2].values) == ("COMPLETE", _objectives(_results(sweep / "2")))
    for trial in trials:
        assert trial.params["strategy.sparsity"] == json.loads((sweep / str(trial.number) / "config.json")
                                                               .read_text())["strategy"]["sparsity"]
    # The sampler was not started again on seed 3: that would give trial 3 trial 0's values.
    sampled = [t.params["strategy.sparsity"] for t in trials]
    assert sampled[:3] == [sparsity for _, sparsity in search.before] and sampled[3] not in sampled[:3]
    assert {row["job"] for row in csv.DictReader((sweep / "summary.csv").open())} == {"0", "1", "2", "3"}
    # Once the study holds n_trials finished trials, resume has nothing to do (in this process: no job starts).
    assert resume([str(sweep)], lambda args: 1) == 0
    assert capsys.readouterr().out.splitlines()[0] == \
        f"progprune: {sweep} is complete (4 of 4 trials finished); nothing to resume"


def test_a_search_resumes_only_a_sampler_it_knows(search: Searched, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """The sampler is built from job 0's hydra.yaml read as data: a _target_ there that is not one of Optuna's
    samplers is refused in one line, and nothing runs."""
    copy = tmp_path / "search"
    shutil.copytree(search.sweep, copy)
    hydra_yaml = copy / "0" / ".hydra" / "hydra.yaml"
    hydra_yaml.write_text(hydra_yaml.read_text().replace("_target_: optuna.samplers.RandomSampler",
                                                         "_target_: os.system"))
    err = refused("resume", str(copy), cwd=tmp_path, monkeypatch=monkeypatch, capsys=capsys)
    assert err == (f"progprune: error: {hydra_yaml}: hydra.sweeper.sampler is 'os.system'; a search resumes with "
                   "one of optuna.samplers.TPESampler, optuna.samplers.RandomSampler, optuna.samplers.NSGAIISampler, "
                   "optuna.samplers.MOTPESampler, optuna.samplers.CmaEsSampler; refused\n")


def test_a_bad_objective_is_one_line_and_no_folder(tmp_path: Path) -> None:
    done = progprune("train", "-m", "hydra/sweeper=progprune_optuna", "search.objectives=[val_accuracy:max,speed:max]",
                     "+strategy=weight", "strategy.sparsity=interval(0.3,0.9)", *TINY, cwd=tmp_path)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == ("progprune: error: search.objectives[1]: got 'speed:max'; expected NAME:max or NAME:min "
                           "with NAME one of test_accuracy, val_accuracy, test_perplexity, val_perplexity, "
                           "latency_ms, macs, params, sparsity\n")
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
def test_the_study_file_holds_every_trial_with_the_values_of_its_run(search: Searched) -> None:
    import optuna

    sweep = search.sweep
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
