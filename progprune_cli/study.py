"""A killed Optuna search's study, reopened from SWEEP_DIR/optuna.db to be continued: its sampler rebuilt from the
search's settings read as data, each trial's overrides made as the sweeper makes them, and each finished run told."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from progprune_cli.atomic import write_atomic
from progprune_cli.config.search import parse_objectives
from progprune_cli.errors import UserError
from progprune_cli.reading import Unreadable, read_json
from progprune_cli.results.objectives import objective_values
from progprune_cli.results.record import SchemaError
from progprune_cli.results.schema import Results

STUDY_FILE = "optuna.db"
# The samplers hydra-optuna-sweeper's presets name (hydra/sweeper/sampler=...), by class: only these are built, each
# from plain values. The grid sampler is left out: it is made from the search space, not from its settings.
SAMPLERS = ("TPESampler", "RandomSampler", "NSGAIISampler", "MOTPESampler", "CmaEsSampler")
_PREFIX = "optuna.samplers."


@dataclass
class Search:
    """A search to continue: its study, how many trials it was to run, and its sampler's class and seed."""

    study: Any  # optuna.Study
    n_trials: int
    sampler: str
    seed: int | None


def _setting(sweeper: dict[str, Any], key: str, kinds: tuple[type, ...], where: Path) -> Any:
    value = sweeper.get(key)
    if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
        raise UserError(f"{where}: hydra.sweeper.{key} is {value!r}; a search resumes only with a plain value there; "
                        "refused")
    return value


def _sampler(settings: Any, where: Path) -> tuple[str, dict[str, Any]]:
    """The sampler's class name and its arguments, each a plain value (nothing in it names code to import)."""
    if not isinstance(settings, dict) or not str(settings.get("_target_", "")).startswith(_PREFIX) or \
            settings["_target_"].removeprefix(_PREFIX) not in SAMPLERS:
        target = settings.get("_target_") if isinstance(settings, dict) else settings
        raise UserError(f"{where}: hydra.sweeper.sampler is {target!r}; a search resumes with one of "
                        f"{', '.join(_PREFIX + name for name in SAMPLERS)}; refused")
    kwargs = {key: value for key, value in settings.items() if key != "_target_"}
    for key, value in kwargs.items():
        if value is not None and not isinstance(value, (bool, int, float, str)) or key.endswith("_func") and value:
            raise UserError(f"{where}: hydra.sweeper.sampler.{key} is {value!r}; a search resumes only with plain "
                            "values for its sampler's settings; refused")
    return settings["_target_"].removeprefix(_PREFIX), kwargs


def resumed_seed(seed: int | None, stored: int) -> int | None:
    """The resumed sampler's seed: a seeded sampler started again replays its random draws from the start (a random
    sampler, and TPE's and NSGA-II's random start-up trials, would repeat the first trials' values), so the seed is
    derived from the search's seed and the number of trials the study holds (numpy's SeedSequence): the same
    resume of the same study samples the same trials, and none replays the first command's stream."""
    if seed is None:
        return None
    import numpy as np

    return int(np.random.SeedSequence([seed, stored]).generate_state(1)[0])


def open_search(sweep_dir: Path, sweeper: dict[str, Any], where: Path) -> Search:
    """The study in SWEEP_DIR/optuna.db under the search's study name, with its sampler rebuilt from `sweeper` (the
    search's hydra.sweeper, read as data from `where`) seeded by resumed_seed."""
    import optuna

    name = _setting(sweeper, "study_name", (str,), where)
    n_trials = _setting(sweeper, "n_trials", (int,), where)
    if sweeper.get("custom_search_space") or sweeper.get("params") or sweeper.get("search_space"):
        raise UserError(f"{where}: hydra.sweeper sets custom_search_space, params or search_space; a search resumes "
                        "only from its command line's search space, which its study records; refused")
    kind, kwargs = _sampler(sweeper.get("sampler"), where)
    storage = sweep_dir / STUDY_FILE
    if storage.is_symlink() or not storage.is_file():
        raise UserError(f"{storage}: no study file; only a search that kept its study there (the preset's "
                        "hydra.sweeper.storage) can be resumed")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{storage}")
    except KeyError:
        raise UserError(f"{storage}: holds no study named {name!r} (hydra.sweeper.study_name); refused") from None
    seed = resumed_seed(kwargs.get("seed"), len(study.trials))
    study.sampler = getattr(optuna.samplers, kind)(**{**kwargs, "seed": seed})
    return Search(study, n_trials, kind, seed)


def overrides(trial: Any) -> list[str]:
    """A trial's job overrides as the sweeper makes them: its sampled parameters, then the fixed ones (which the
    sweeper keeps as the trial's user attributes)."""
    return [f"{name}={value}" for name, value in {**trial.params, **trial.user_attrs}.items()]


def space(study: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """The search space (name → distribution) and the fixed overrides, as the study's latest trial recorded them
    (a study given more trials by a later command holds that command's space last)."""
    latest = max(study.trials, key=lambda t: t.number)
    return dict(latest.distributions), dict(latest.user_attrs)


def every_value(study: Any) -> list[str]:
    """Every override line a new trial may be given, for vetting: each fixed value, each choice of a categorical
    parameter, and a numeric parameter at its lower end (a number cannot name code)."""
    distributions, fixed = space(study)
    lines = [f"{name}={value}" for name, value in fixed.items()]
    for name, distribution in distributions.items():
        values = getattr(distribution, "choices", None) or [getattr(distribution, "low", 0)]
        lines += [f"{name}={value}" for value in values]
    return lines


def ask(study: Any) -> Any:
    """A new trial with every parameter of the search space sampled and the fixed ones recorded (the sweeper's
    own way, so its study reads the same)."""
    distributions, fixed = space(study)
    trial = study.ask()
    for name, distribution in distributions.items():
        trial._suggest(name, distribution)  # what hydra-optuna-sweeper calls: a distribution built, not described
    for name, value in fixed.items():
        trial.set_user_attr(name, value)
    return trial


def run_values(job: Path, directions: int) -> list[float] | None:
    """The run's search.objectives values from its results.json (as the job would have returned them), or None
    when it has none: the run failed, or it did not measure one of them."""
    try:
        doc = Results.from_json(read_json(job / "results.json", within=job))
        objectives = parse_objectives(list(doc.config["search"]["objectives"]))
    except (FileNotFoundError, Unreadable, SchemaError, UserError, KeyError, TypeError):
        return None
    values = objective_values(doc, objectives)
    if len(values) != directions or any(v is None or not math.isfinite(v) for v in values):
        return None
    return [float(v) for v in values if v is not None]


def tell(study: Any, number: int, values: list[float] | None) -> None:
    """The trial's outcome: its values, or a failed trial (never a score)."""
    import optuna

    state = optuna.trial.TrialState.COMPLETE if values is not None else optuna.trial.TrialState.FAIL
    study.tell(number, values, state=state)


def write_answer(study: Any, sweep_dir: Path) -> None:
    """optimization_results.yaml as the sweeper writes it at the end: the best trial, or the Pareto front."""
    import yaml

    if not any(t.values is not None for t in study.trials):
        return
    if len(study.directions) < 2:
        best = study.best_trial
        answer: dict[str, Any] = {"name": "optuna", "best_params": best.params, "best_value": best.value}
    else:
        answer = {"name": "optuna", "solutions": [{"params": t.params, "values": t.values} for t in study.best_trials]}
    write_atomic(sweep_dir / "optimization_results.yaml", yaml.safe_dump(answer, sort_keys=False))
