"""Range and cross-field checks of a typed RunConfig: what the schema's types cannot say (the one-line errors)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from progprune_cli.config.schema import RunConfig, ScheduleConfig, StrategyConfig
from progprune_cli.errors import UserError
from progprune_cli.reading import Unreadable, read_yaml
from progprune_cli.config.search import parse_objectives


def check_run_config(cfg: RunConfig) -> None:
    """Every check of a typed config, in one pass; `strategy.layers_from` is read into `strategy.layers` and the
    sensitivity levels are sorted (the only values this changes)."""
    check_values(cfg, "")
    if cfg.strategy is not None:
        fill_layers_from(cfg.strategy)
    _check_ranges(cfg)
    parse_objectives(cfg.search.objectives)


def check_values(value: Any, where: str) -> None:
    """Walk the typed objects: every `choice(...)` field holds one of its values, and no number is NaN or infinite
    (a component's own keys included: `optimizer.lr=nan` must not reach torch, nor pass a range check)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"{where}: got {value}; expected a finite number")
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            item, key = getattr(value, f.name), f"{where}.{f.name}" if where else f.name
            allowed = f.metadata.get("choices")
            if allowed is not None and item not in allowed:
                raise UserError(f"{key}: got {item!r}; allowed values are {', '.join(map(str, allowed))}")
            for i, entry in enumerate(item if f.metadata.get("item_choices") else ()):
                if entry not in f.metadata["item_choices"]:
                    raise UserError(f"{key}[{i}]: got {entry!r}; allowed values are "
                                    f"{', '.join(map(str, f.metadata['item_choices']))}")
            check_values(item, key)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            check_values(item, f"{where}.{key}")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_values(item, f"{where}[{i}]")


def fill_layers_from(s: StrategyConfig) -> None:
    """`strategy.layers_from`: a YAML mapping unit → sparsity fills `strategy.layers`; explicit entries win, also
    over a file entry naming the same layer another way (`fc` given, `fc.weight` in the file)."""
    if s.layers_from is None:
        return
    key = f"strategy.layers_from: {s.layers_from}"
    try:
        loaded = read_yaml(s.layers_from)
    except FileNotFoundError as error:
        raise UserError(f"{key}: cannot read it ({error.strerror})") from None
    except Unreadable as error:
        raise UserError(f"{key}: {error.why}") from None
    if not isinstance(loaded, Mapping):
        raise UserError(f"{key}: expected a mapping of unit: sparsity, found {type(loaded).__name__}")
    from_file: dict[str, float] = {}
    for unit, value in loaded.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
            raise UserError(f"{key}: {unit}: got {value!r}; must be a sparsity in [0, 1)")
        from_file[str(unit)] = float(value)
    shadowed = set(s.layers) | {f"{name}.{kind}" for name in s.layers for kind in ("weight", "bias")}
    # Explicit entries first: the first matching entry is the one select() and the pruning log use.
    s.layers = {**s.layers, **{k: v for k, v in from_file.items() if k not in shadowed}}


def _check_sensitivity(cfg: RunConfig) -> None:
    """`sensitivity:` levels, sorted here; the budget can only reach a target some level reaches."""
    s = cfg.sensitivity
    if not s.levels:
        raise UserError("sensitivity.levels: empty; give at least one level in (0, 1), e.g. [0.5, 0.9]")
    for level in s.levels:
        if not 0.0 < level < 1.0:
            raise UserError(f"sensitivity.levels: got {level}; every level must be in (0, 1)")
    if len(set(s.levels)) != len(s.levels):
        twice = next(v for v in s.levels if s.levels.count(v) > 1)
        raise UserError(f"sensitivity.levels: {twice} appears twice; give each level once")
    _fraction(s.target, "sensitivity.target")
    if s.target > max(s.levels):
        raise UserError(f"sensitivity.target: got {s.target}; the budget cannot exceed the largest of "
                        f"sensitivity.levels ({max(s.levels)})")
    s.levels = sorted(s.levels)


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
    for key in ("timing_samples", "train_samples"):
        if getattr(ev, key) is not None:
            _at_least(getattr(ev, key), 1, f"evaluate.{key}")
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
    _check_sensitivity(cfg)


def _check_strategy(s: StrategyConfig) -> None:
    if s.threshold is not None and s.threshold < 0:
        raise UserError(f"strategy.threshold: got {s.threshold}; must be >= 0")
    if s.threshold is None:
        if s.sparsity is None:
            raise UserError("strategy.sparsity: null needs strategy.threshold; set one of them")
        _fraction(s.sparsity, "strategy.sparsity")
    for layer, value in s.layers.items():
        _fraction(value, f"strategy.layers.{layer}")
    check_pattern(s)
    _check_target(s)


def _check_target(s: StrategyConfig) -> None:
    """A budget's range, and what it cannot go with (the strategy's granularity is checked in pruning/budget.py)."""
    t = s.target
    if len(t.keys) > 1:
        raise UserError(f"strategy.target: got {' and '.join(f'{k}={getattr(t, k):g}' for k in t.keys)}; set one of "
                        "them")
    if t.macs is not None and t.macs <= 1:
        raise UserError(f"strategy.target.macs: got {t.macs:g}; must be > 1 (dense MACs / pruned MACs)")
    if t.params is not None and not 0 < t.params < 1:
        raise UserError(f"strategy.target.params: got {t.params:g}; must be in (0, 1) (the fraction of parameters "
                        "kept)")
    if t.latency_ms is not None and t.latency_ms <= 0:  # NaN and infinity: check_values' line
        raise UserError(f"strategy.target.latency_ms: got {t.latency_ms:g}; must be > 0 (milliseconds per sample at "
                        "evaluate.latency_batch, measured on the run's device)")
    if t.key is None:
        return
    key = f"strategy.target.{t.key}={getattr(t, t.key):g}"
    if s.threshold is not None:
        raise UserError(f"{key}: a budget sets strategy.sparsity, so it needs sparsity mode; set "
                        "strategy.threshold=null")
    if s.pattern is not None:
        raise UserError(f"{key}: strategy.pattern={s.pattern} fixes the sparsity; set strategy.pattern=null")


def check_pattern(s: StrategyConfig) -> tuple[int, int] | None:
    """`strategy.pattern` as (N, M) (None when unset), refusing a pattern the other strategy keys contradict (the
    strategy checks its granularity itself, in pruning/strategies/base.py)."""
    if s.pattern is None:
        return None
    if s.pattern_nm is None:
        raise UserError(f"strategy.pattern: got {s.pattern!r}; expected N:M with 1 <= N < M, e.g. 2:4")
    n, m = s.pattern_nm
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
