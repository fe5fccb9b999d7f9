"""`progprune resume RUN_DIR|SWEEP_DIR`: continue unfinished runs from their last checkpoint, with their own config
(only what a user could give `progprune train` for progprune's own config is taken from a folder)."""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from progprune_cli.errors import UserError
from progprune_cli.filelock import Busy, FileLock
from progprune_cli.results.records import (MULTIRUN, OVERRIDES, saved_overrides, search_settings, searched, sweep_jobs,
                                           sweep_task)
from progprune_cli.results.status import read_status

TRUST = "--trust-targets"
USAGE = (f"usage: progprune resume [{TRUST}] RUN_DIR|SWEEP_DIR   (continue from the last checkpoint with the "
         f"folder's own config; {TRUST}: also take overrides that set a _target_, code to import, and print them)")


def is_run(path: Path) -> bool:
    """A run folder by its contents: status.json or results.json, or else Hydra's overrides.yaml with progprune's
    config.json or checkpoints/ (so a lost or corrupt status.json does not make a run unresumable)."""
    if (path / "status.json").exists() or (path / "results.json").exists():
        return True
    return path.joinpath(*OVERRIDES).exists() and ((path / "config.json").exists() or (path / "checkpoints").is_dir())


def resume(args: list[str], train: Callable[[list[str]], int]) -> int:
    if any(a in ("-h", "--help") for a in args):
        print(USAGE)
        return 0
    trust = TRUST in args
    rest = [a for a in args if a != TRUST]
    if len(rest) != 1 or rest[0].startswith("-"):
        print(USAGE, file=sys.stderr)
        return 2
    target = Path(rest[0]).resolve()
    if not target.is_dir():
        raise UserError(f"{rest[0]}: no such folder")
    if is_run(target):
        return _resume_run(target, train, trust)
    if searched(target):
        return _resume_search(target, rest[0], trust)
    return _resume_sweep(target, _sweep_plan(target, rest[0], trust), trust)


def _resume_run(run_dir: Path, train: Callable[[list[str]], int], trust: bool) -> int:
    if (run_dir / "results.json").exists():
        print(f"progprune: {run_dir} is complete; nothing to resume")
        return 0
    overrides = saved_overrides(run_dir)
    _announce(vet(overrides, run_dir.joinpath(*OVERRIDES), run_dir, trust), run_dir.joinpath(*OVERRIDES))
    status = read_status(run_dir)
    was = ("status.json missing or unreadable; the run writes it again" if status is None else
           str(status.get("status", "unknown")) + (f" in {status['stage']}" if status.get("stage") else ""))
    print(f"progprune: resuming {run_dir} (was {was})")
    return train([*overrides, f"hydra.run.dir={run_dir}"])


def _sweep_plan(sweep_dir: Path, given: str, trust: bool) -> list[tuple[Path, list[str] | None]]:
    """Every job of the sweep with the overrides to start it with (None: only resumed), all checked before any
    runs: from multirun.yaml's job list, or for an older sweep without one from the job folders that exist."""
    task = sweep_task(sweep_dir)
    source = sweep_dir / MULTIRUN
    if task is None:
        folders = sorted((p for p in sweep_dir.iterdir() if p.is_dir() and is_run(p)),
                         key=lambda p: (len(p.name), p.name))
        if not folders:
            raise UserError(f"{given}: not a run folder (no status.json) or a sweep folder of runs")
        print(f"progprune: {source} missing (an older sweep): resuming the job folders that exist; a job that "
              "never started cannot be known")
        plan: list[tuple[Path, list[str] | None]] = [(p, None) for p in folders]
        imports: list[str] = []
    else:
        imports = vet(task, source, sweep_dir, trust)
        plan = [(sweep_dir / str(i), job) for i, job in enumerate(sweep_jobs(task, source))]
    for folder, _ in plan:
        if folder.is_symlink():
            raise UserError(f"{folder}: a symbolic link; refused (a link in a sweep folder is never followed)")
        if is_run(folder) and not (folder / "results.json").exists():
            vet(saved_overrides(folder), folder.joinpath(*OVERRIDES), folder, trust)  # its own resume prints them
    _announce(imports, source)
    return plan


def _resume_sweep(sweep_dir: Path, plan: list[tuple[Path, list[str] | None]], trust: bool) -> int:
    """Each job in its own process (Hydra runs one job per process here), one after another: a complete one is
    skipped, an unfinished one resumed, one that never started started in its folder."""
    failed = 0
    for folder, overrides in plan:
        if (folder / "results.json").exists():
            continue
        if overrides is not None and not is_run(folder):
            print(f"progprune: starting job {folder.name} of {sweep_dir} (it never started)")
        code = _job(folder, overrides, trust)
        if code in (130, 143):
            return code  # interrupted again: stop here, the rest stays resumable
        failed += code != 0
    from progprune_cli.report.summary import write_sweep_summary

    print(f"sweep summary: {write_sweep_summary(sweep_dir)}")
    return 1 if failed else 0


def _job(folder: Path, overrides: list[str] | None, trust: bool, fresh: bool = False) -> int:
    """One job in its own process: its run resumed where it is one (or `overrides` is None), else started there
    (always started when `fresh`: a folder already there is then train's to refuse)."""
    if overrides is None or is_run(folder) and not fresh:
        command = ["resume", *([TRUST] if trust else []), str(folder)]
    else:
        command = ["train", *overrides, f"hydra.run.dir={folder}"]
    return subprocess.run([sys.executable, "-m", "progprune_cli", *command]).returncode


def _resume_search(sweep_dir: Path, given: str, trust: bool) -> int:
    """An Optuna search continued in its study (SWEEP_DIR/optuna.db): each trial the stop left running is finished
    in its folder (its run resumed, or started with the trial's own parameters), then new trials are asked of the
    study until it holds hydra.sweeper.n_trials finished ones; trial N runs in SWEEP_DIR/N, one at a time."""
    from progprune_cli import study as studies

    lock = FileLock(sweep_dir / ".search.lock")
    try:
        lock.acquire(blocking=False)
    except Busy as busy:
        raise UserError(f"{given}: this search is being resumed by another progprune ({busy})") from None
    try:
        search = studies.open_search(sweep_dir, *search_settings(sweep_dir))
        code = _search_jobs(search, sweep_dir, trust)
        if code != 0:
            return code  # stopped again: the rest stays resumable
        studies.write_answer(search.study, sweep_dir)
    finally:
        lock.release()
    from progprune_cli.report.summary import write_sweep_summary

    print(f"sweep summary: {write_sweep_summary(sweep_dir)}")
    return 0


def _search_jobs(search: Any, sweep_dir: Path, trust: bool) -> int:
    """Run the search's remaining trials, each told to the study as it ends; the exit code of a job stopped by a
    signal (the rest stays resumable), else 0. Every line a job can be given is vetted before the first runs."""
    from optuna.trial import TrialState

    from progprune_cli import study as studies

    study, source = search.study, sweep_dir / studies.STUDY_FILE
    running = sorted((t for t in study.trials if t.state == TrialState.RUNNING), key=lambda t: t.number)
    imports = vet(studies.every_value(study), source, sweep_dir, trust)
    for trial in running:
        folder = sweep_dir / str(trial.number)
        if folder.is_symlink():
            raise UserError(f"{folder}: a symbolic link; refused (a link in a sweep folder is never followed)")
        lines = saved_overrides(folder) if is_run(folder) else studies.overrides(trial)
        if set(lines) != set(studies.overrides(trial)):
            raise UserError(f"{folder}: its run's overrides are not trial {trial.number}'s in {source} (a folder of "
                            "another sweep, or changed); refused, nothing was run")
        imports += vet(lines, folder.joinpath(*OVERRIDES) if is_run(folder) else source, folder, trust)
    _announce(imports, source)
    finished = sum(t.state.is_finished() for t in study.trials)
    for number in range(len(study.trials), len(study.trials) + search.n_trials - finished - len(running)):
        if os.path.lexists(sweep_dir / str(number)):  # a new trial N runs in SWEEP_DIR/N, which must be free
            raise UserError(f"{sweep_dir / str(number)}: exists, but the study has no trial {number} yet; refused, "
                            "nothing was run")
    if not running and finished >= search.n_trials:
        print(f"progprune: {sweep_dir} is complete ({finished} of {search.n_trials} trials finished); nothing to "
              "resume")
        return 0
    print(f"progprune: resuming the search {sweep_dir}: {finished} of {search.n_trials} trials finished, "
          f"{len(running)} interrupted; the {search.sampler} continues with seed {search.seed} (see README)")

    left = {trial.number for trial in running}

    def trials() -> Any:
        yield from running
        while sum(t.state.is_finished() for t in study.get_trials(deepcopy=False)) < search.n_trials:
            yield studies.ask(study)

    for trial in trials():
        folder = sweep_dir / str(trial.number)
        code = _job(folder, studies.overrides(trial), trust, fresh=trial.number not in left)
        if code in (130, 143):
            return code
        values = studies.run_values(folder, len(study.directions))
        if values is None:
            print(f"progprune: trial {trial.number} failed (its run {folder} has no search.objectives values; "
                  "see its status.json); told to the study as failed", file=sys.stderr)
        studies.tell(study, trial.number, values)
    return 0


@functools.cache
def own_keys() -> frozenset[str]:
    """progprune's own config: the top-level keys of conf/config.yaml composed, and conf/'s group folders."""
    from hydra import compose, initialize_config_module

    import progprune_cli.catalog  # noqa: F401  (the schemas conf/config.yaml composes on)
    from progprune_cli.config.groups import CONFIG_MODULE, group_options

    with initialize_config_module(config_module=CONFIG_MODULE, version_base="1.3"):
        keys = {str(key) for key in compose(config_name="config").keys()}
    return frozenset((keys | set(group_options())) - {"hydra"})


def vet(lines: list[str], source: Path, folder: Path, trust: bool) -> list[str]:
    """What `lines` (overrides read from the file `source` in `folder`) would import; a UserError naming the
    first line resume must not take: a flag, anything of Hydra's, a key outside progprune's own config, a
    `_target_` without --trust-targets, or a line Hydra cannot parse."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    allowed, parser, imports = own_keys(), OverridesParser.create(), []
    for line in lines:
        if line.startswith("-"):
            raise UserError(f"{source}: {line}: a command-line flag, not an override; resume takes none from a "
                            "folder; nothing was run")
        try:
            override = parser.parse_override(line)
        except HydraException:
            raise UserError(f"{source}: {line}: not an override Hydra can parse; nothing was run") from None
        key = re.split(r"[./]", override.key_or_group)
        package = override.package.split(".") if override.package is not None else []
        package = package[1:] if package[:1] == ["_global_"] else package
        if "hydra" in key or "hydra" in package:
            raise UserError(f"{source}: {line}: a Hydra setting; resume takes none from a folder (Hydra's settings "
                            "can run code); nothing was run")
        for top in (key[0], *package[:1]):
            if top not in allowed:
                raise UserError(f"{source}: {line}: {top or repr(top)} is not one of progprune's config keys or "
                                f"groups ({', '.join(sorted(allowed))}); resume takes only those from a folder; "
                                "nothing was run")
        targets = _targets(override, "_target_" in key or "_target_" in package)
        if targets and not trust:
            raise UserError(f"{source}: {line}: sets a _target_ (code to import: {', '.join(targets)}); resume "
                            f"takes one from a folder only with {TRUST} (progprune resume {TRUST} {folder}); "
                            "nothing was run")
        imports += targets
    return imports


def _targets(override: Any, keyed: bool) -> list[str]:
    """The dotted paths an override would have instantiated: its value where its key is a `_target_`, and the
    `_target_` of any mapping in its value (a sweep's values included)."""
    values = (list(override.sweep_iterator()) if override.is_discrete_sweep() else []) \
        if override.is_sweep_override() else [override.value()]
    found = [str(v) for v in values if v is not None and not isinstance(v, (dict, list))] if keyed else []
    stack = list(values)
    while stack:
        value = stack.pop(0)
        if isinstance(value, dict):
            found += [str(value["_target_"])] if "_target_" in value else []
            stack += value.values()
        elif isinstance(value, list):
            stack += value
    return found


def _announce(imports: list[str], source: Path) -> None:
    for dotted in imports:
        print(f"progprune: resume imports {dotted} (from {source})", file=sys.stderr)
