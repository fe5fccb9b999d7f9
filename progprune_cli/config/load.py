"""Turn the composed config (a plain dict) into a validated RunConfig, or raise a one-line UserError."""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from progprune_cli.config.schema import (
    CheckpointConfig,
    DatasetConfig,
    ExpectedFigure,
    LRSchedulerConfig,
    EvaluateConfig,
    ModelConfig,
    OptimizerConfig,
    RunConfig,
    ScheduleConfig,
    SensitivityConfig,
    StageConfig,
    StrategyConfig,
    TrainConfig,
)
from progprune_cli.config.strict import from_dict
from progprune_cli.errors import UserError

_TOP_KEYS = {f.name for f in dataclasses.fields(RunConfig)}


def load_run_config(data: Mapping[str, Any]) -> RunConfig:
    """Validate every key and value that does not depend on a component's own options."""
    data = {k: v for k, v in data.items() if k != "hydra"}
    unknown = sorted(set(data) - _TOP_KEYS)
    _finite(data, "")
    if unknown:
        raise UserError(f"{unknown[0]}: unknown key; allowed keys are {', '.join(sorted(_TOP_KEYS))}")
    strategy = data.get("strategy")
    cfg = RunConfig(
        seed=from_dict(_Seed, {"seed": data.get("seed", 0)}, "").seed,
        device=from_dict(_Device, {"device": data.get("device", "auto")}, "").device,
        dataset=_component(DatasetConfig, data.get("dataset"), "dataset"),
        model=_component(ModelConfig, data.get("model"), "model"),
        optimizer=_component(OptimizerConfig, data.get("optimizer"), "optimizer"),
        strategy=None if strategy is None else _layers_from(_component(StrategyConfig, strategy, "strategy")),
        schedule=_component(ScheduleConfig, data.get("schedule"), "schedule"),
        train=_stage(TrainConfig, data.get("train"), "train"),
        prune=_stage(StageConfig, data.get("prune"), "prune"),
        finetune=_stage(StageConfig, data.get("finetune"), "finetune"),
        evaluate=from_dict(EvaluateConfig, data.get("evaluate"), "evaluate"),
        checkpoint=from_dict(CheckpointConfig, data.get("checkpoint"), "checkpoint"),
        sensitivity=_sensitivity(data.get("sensitivity")),
        expected=_expected(data.get("expected")),
    )
    _check_ranges(cfg)
    return cfg


@dataclasses.dataclass(frozen=True)
class _Seed:
    seed: int


@dataclasses.dataclass(frozen=True)
class _Device:
    device: Any  # checked below with the allowed values in the message

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu", "cuda"):
            raise UserError(f"device: got {self.device!r}; allowed values are auto, cpu, cuda")


def _expected(data: Any) -> tuple[ExpectedFigure, ...]:
    if data is None:
        return ()
    if not isinstance(data, (list, tuple)):
        raise UserError(f"expected: got {data!r}; expected a list of figures")
    return tuple(from_dict(ExpectedFigure, item if isinstance(item, Mapping) else {"source": item},
                           f"expected[{i}]") for i, item in enumerate(data))


def _sensitivity(data: Any) -> SensitivityConfig:
    """`sensitivity:` with its levels sorted; the budget can only reach a target some level reaches."""
    cfg = from_dict(SensitivityConfig, data, "sensitivity")
    if not cfg.levels:
        raise UserError("sensitivity.levels: empty; give at least one level in (0, 1), e.g. [0.5, 0.9]")
    for level in cfg.levels:
        if not 0.0 < level < 1.0:
            raise UserError(f"sensitivity.levels: got {level}; every level must be in (0, 1)")
    if len(set(cfg.levels)) != len(cfg.levels):
        twice = next(v for v in cfg.levels if cfg.levels.count(v) > 1)
        raise UserError(f"sensitivity.levels: {twice} appears twice; give each level once")
    _fraction(cfg.target, "sensitivity.target")
    if cfg.target > max(cfg.levels):
        raise UserError(f"sensitivity.target: got {cfg.target}; the budget cannot exceed the largest of "
                        f"sensitivity.levels ({max(cfg.levels)})")
    return dataclasses.replace(cfg, levels=tuple(sorted(cfg.levels)))


def _layers_from(s: StrategyConfig) -> StrategyConfig:
    """`strategy.layers_from`: a YAML mapping unit → sparsity fills `strategy.layers`; explicit entries win, also
    over a file entry naming the same layer another way (`fc` given, `fc.weight` in the file)."""
    if s.layers_from is None:
        return s
    key = f"strategy.layers_from: {s.layers_from}"
    try:
        loaded = yaml.safe_load(Path(s.layers_from).read_text())
    except OSError as error:
        raise UserError(f"{key}: cannot read it ({error.strerror or type(error).__name__})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UserError(f"{key}: not valid YAML ({_first_line(error)})") from None
    if not isinstance(loaded, Mapping):
        raise UserError(f"{key}: expected a mapping of unit: sparsity, found {type(loaded).__name__}")
    from_file: dict[str, float] = {}
    for unit, value in loaded.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise UserError(f"{key}: {unit}: got {value!r}; must be a sparsity in [0, 1)")
        from_file[str(unit)] = float(value)
    shadowed = set(s.layers) | {f"{name}.{kind}" for name in s.layers for kind in ("weight", "bias")}
    # Explicit entries first: the first matching entry is the one select() and the pruning log use.
    return dataclasses.replace(s, layers={**s.layers, **{k: v for k, v in from_file.items() if k not in shadowed}})


def _first_line(error: BaseException) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


def _finite(tree: Any, where: str) -> None:
    """No NaN or infinity anywhere, a component's own options included (the typed keys say so themselves too):
    `optimizer.lr=nan` must not reach torch, nor a nan pass every range check."""
    if isinstance(tree, float) and not math.isfinite(tree):
        raise UserError(f"{where}: got {tree}; expected a finite number")
    items = tree.items() if isinstance(tree, Mapping) else enumerate(tree) if isinstance(tree, list) else ()
    for key, value in items:
        _finite(value, f"{where}[{key}]" if isinstance(key, int) else f"{where}.{key}" if where else str(key))


def _stage(cls: type, data: Any, where: str) -> Any:
    """A stage section; its `lr_scheduler` is a component of its own (common keys + the schedule's options)."""
    if data is not None and not isinstance(data, Mapping):
        raise UserError(f"{where}: got {data!r}; expected a mapping of {where} keys")
    data = dict(data or {})
    scheduler = data.pop("lr_scheduler", None)
    stage = from_dict(cls, data, where, ("lr_scheduler",))
    if scheduler is None:
        return stage
    return dataclasses.replace(stage, lr_scheduler=_component(LRSchedulerConfig, scheduler, f"{where}.lr_scheduler"))


def _component(cls: type, data: Any, group: str) -> Any:
    """Split a group's keys into the typed common ones and the component's own `options`."""
    if not isinstance(data, Mapping) or "name" not in data:
        raise UserError(f"{group}: missing; choose one with {group}=NAME")
    common = {f.name for f in dataclasses.fields(cls)} - {"options"}
    typed = {k: v for k, v in data.items() if k in common}
    typed["options"] = {k: v for k, v in data.items() if k not in common}
    return from_dict(cls, typed, group)


def _check_ranges(cfg: RunConfig) -> None:
    """Range checks that the types alone cannot express."""
    for stage in ("train", "prune", "finetune"):
        section = getattr(cfg, stage)
        _at_least(section.epochs, 0, f"{stage}.epochs")
        _at_least(section.batch_size, 1, f"{stage}.batch_size")
        if section.lr is not None and section.lr <= 0:
            raise UserError(f"{stage}.lr: got {section.lr}; must be > 0 or null (null: optimizer.lr)")
        _at_least(section.lr_scheduler.warmup_epochs, 0, f"{stage}.lr_scheduler.warmup_epochs")
        if not 0.0 < section.lr_scheduler.warmup_factor <= 1.0:
            raise UserError(f"{stage}.lr_scheduler.warmup_factor: got {section.lr_scheduler.warmup_factor}; "
                            "must be in (0, 1]")
    if cfg.train.threads is not None:
        _at_least(cfg.train.threads, 1, "train.threads")
    if cfg.device == "cpu":  # device=auto is checked once it is resolved (parts.build_parts, the Loop)
        check_precision(cfg.train.precision, "cpu")
    if not 0.0 <= cfg.train.label_smoothing < 1.0:
        raise UserError(f"train.label_smoothing: got {cfg.train.label_smoothing}; must be in [0, 1)")
    if cfg.checkpoint.every_steps is not None:
        _at_least(cfg.checkpoint.every_steps, 1, "checkpoint.every_steps")
    ev = cfg.evaluate
    for key in ("batch_size", "latency_batch", "repeats", "min_repeats", "threads"):
        _at_least(getattr(ev, key), 1, f"evaluate.{key}")
    if ev.target_spread is not None and not ev.target_spread > 0:
        raise UserError(f"evaluate.target_spread: got {ev.target_spread}; must be > 0 (e.g. 0.05) or null (always "
                        "evaluate.repeats timed passes)")
    _at_least(ev.warmup, 0, "evaluate.warmup")
    if ev.timing_samples is not None:
        _at_least(ev.timing_samples, 1, "evaluate.timing_samples")
    if "torch" not in ev.backends:  # the torch timings are the results' own; other backends are timed beside them
        raise UserError(f"evaluate.backends: got [{', '.join(ev.backends)}]; it must include torch (e.g. "
                        "[torch, onnxruntime])")
    opt = cfg.optimizer
    if opt.lr <= 0:
        raise UserError(f"optimizer.lr: got {opt.lr}; must be > 0")
    if opt.clip_grad_norm is not None and opt.clip_grad_norm <= 0:
        raise UserError(f"optimizer.clip_grad_norm: got {opt.clip_grad_norm}; must be > 0 or null")
    for key in ("l1", "l2"):
        if getattr(opt, key) < 0:
            raise UserError(f"optimizer.{key}: got {getattr(opt, key)}; must be >= 0")
    if cfg.strategy is not None:
        _check_strategy(cfg.strategy)
        _check_schedule(cfg.schedule)


def _check_strategy(s: StrategyConfig) -> None:
    if s.threshold is not None and s.threshold < 0:
        raise UserError(f"strategy.threshold: got {s.threshold}; must be >= 0")
    if s.threshold is None:
        if s.sparsity is None:
            raise UserError("strategy.sparsity: null needs strategy.threshold; set one of them")
        _fraction(s.sparsity, "strategy.sparsity")
    for layer, value in s.layers.items():
        _fraction(value, f"strategy.layers.{layer}")
    strategy_pattern(s)


def strategy_pattern(s: StrategyConfig) -> tuple[int, int] | None:
    """`strategy.pattern` as (n, m), or None when unset; a pattern the other strategy keys contradict is a
    one-line error (the strategy checks its granularity itself, in pruning/strategies/base.py)."""
    if s.pattern is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*:\s*(\d+)\s*", s.pattern)
    n, m = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if not 1 <= n < m:
        raise UserError(f"strategy.pattern: got {s.pattern!r}; expected N:M with 1 <= N < M, e.g. 2:4")
    key = f"strategy.pattern: {n}:{m}"
    if s.threshold is not None:
        raise UserError(f"{key} keeps {n} of every {m} weights whatever their size, so it needs sparsity mode; set "
                        "strategy.threshold=null")
    # The schedule ramps to strategy.sparsity; it must be what the pattern leaves, or its targets would lie.
    if s.sparsity is None or abs(s.sparsity - (m - n) / m) > 1e-6:
        raise UserError(f"{key} leaves converted layers {(m - n) / m:g} sparse, so the schedule ramps to that; "
                        f"set strategy.sparsity={(m - n) / m:g} (got {s.sparsity})")
    if s.scope != "layer":
        raise UserError(f"{key} chooses inside each group of {m} weights, not by a ranking across layers; set "
                        f"strategy.scope=layer (got {s.scope})")
    if s.layers:
        raise UserError(f"{key} makes every converted layer {(m - n) / m:g} sparse; per-layer targets "
                        f"(strategy.layers{', strategy.layers_from' if s.layers_from else ''}) do not apply")
    if s.include_bias:
        raise UserError(f"{key} groups the input weights of each output; a bias has none, so set "
                        "strategy.include_bias=false")
    return n, m


def _check_schedule(s: ScheduleConfig) -> None:
    _at_least(s.start, 0, "schedule.start")
    _at_least(s.frequency, 1, "schedule.frequency")
    if s.end is not None and s.end < s.start:
        raise UserError(f"schedule.end: got {s.end}; must be >= schedule.start ({s.start})")
    _fraction(s.initial_sparsity, "schedule.initial_sparsity")
    if s.max_drop is not None:
        _fraction(s.max_drop, "schedule.max_drop")
    if s.rewind is not None and s.rewind != "init" and not (isinstance(s.rewind, int) and s.rewind >= 0):
        raise UserError(f"schedule.rewind: got {s.rewind!r}; allowed values are null, init, or an epoch >= 0")


def check_precision(precision: str, device_type: str) -> None:
    """`train.precision` on the device a run trains on: torch's CPU autocast runs bf16, not fp16."""
    if precision == "fp16" and device_type != "cuda":
        raise UserError(f"train.precision: fp16 needs a CUDA device (autocast on the {device_type.upper()} "
                        "supports bf16); use train.precision=bf16 or fp32, or device=cuda")


def _fraction(value: float, key: str) -> None:
    if not 0.0 <= value < 1.0:
        raise UserError(f"{key}: got {value}; must be in [0, 1)")


def _at_least(value: int, low: int, key: str) -> None:
    if value < low:
        raise UserError(f"{key}: got {value}; must be >= {low}")
