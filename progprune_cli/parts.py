"""The run's parts, built once from the config before any training: data, model factory, strategy, events, device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from progprune_cli.data import DataInfo, DataSplits, build_data, inputs, steps_per_epoch
from progprune_cli.optim.losses import LossFn, build_loss
from progprune_cli.models import build_model
from progprune_cli.models.weights import Fitted, code_identity, load_weights, source_of
from progprune_cli.measure.latency import per_sample_ms
from progprune_cli.pruning.budget import BudgetFit, find_budget
from progprune_cli.pruning.latency_budget import Timer, search_latency
from progprune_cli.pruning.schedules import Event, build_events
from progprune_cli.pruning.strategies import Strategy, build_strategy
from progprune_cli.config import EvaluateConfig, ModelConfig, RunConfig
from progprune_cli.config.checks import check_precision
from progprune_cli.device import resolve_device
from progprune_cli.distributed import World
from progprune_cli.errors import UserError, described


@dataclass(frozen=True)
class Origin:
    """Where the run's model comes from: its source (progprune:NAME, torchvision:ARCH, timm:ARCH,
    custom:MODULE.CLASS), what else decides its architecture (a library version, the user module's hash), the
    weights it started from, and what the original model is: trained (train.epochs on the data), loaded
    (model.weights with train.epochs=0: the weights as given) or untrained (train.epochs=0 without weights)."""

    source: str
    code: str | None
    weights: Fitted | None
    original: str


@dataclass
class Parts:
    """The run's parts; `events` are in optimizer steps of the prune stage."""

    cfg: RunConfig
    data: DataSplits
    device: torch.device
    loss_fn: LossFn
    make_model: Callable[[], nn.Module]
    strategy: Strategy | None
    events: list[Event]
    origin: Origin | None = None
    budget: BudgetFit | None = None  # strategy.target, and the sparsity found for it (strategy.sparsity now holds it)

    def steps_per_epoch(self, batch_size: int) -> int:
        return steps_per_epoch(self.data.train, batch_size)


def build_parts(cfg: RunConfig, world: World | None = None, stored: BudgetFit | None = None) -> Parts:
    """Build and check every part; any bad value fails here, before a single training step. Under torchrun the
    device is the rank's own (`world.device`). A latency budget's search is timed here, once per run, unless the
    run folder keeps it (`stored`, read by the runner: a resumed run reuses it rather than time again)."""
    device = world.device if world is not None and world.device is not None else resolve_device(cfg.device)
    check_precision(cfg.train.precision, device.type)
    loss_fn = build_loss(cfg.train.loss, cfg.train.label_smoothing)
    strategy = None if cfg.strategy is None else build_strategy(cfg.strategy)
    data = build_data(cfg.dataset, cfg.seed)

    def make_model() -> nn.Module:
        return model_for_run(cfg.model, data.info, cfg.seed)[0]

    model, fitted = model_for_run(cfg.model, data.info, cfg.seed)
    origin = Origin(source_of(cfg.model), code_identity(cfg.model), fitted, original_kind(cfg, fitted))
    events: list[Event] = []
    budget = None
    if strategy is not None:
        strategy.check(model, data.info)
        if stored is None and cfg.strategy is not None and cfg.strategy.target.key == "latency_ms":
            if world is not None and world.distributed:
                raise UserError(f"strategy.target.latency_ms={cfg.strategy.target.latency_ms:g}: not under torchrun "
                                "(every rank would time candidates at once on shared hardware); search it in a "
                                "single-process run and pass the strategy.sparsity it finds")
            sample = inputs(data.test, cfg.evaluate.timing_samples)  # the inputs the evaluate stage times
            stored = search_latency(strategy, model, data.info, candidate_timer(cfg.evaluate, sample, device),
                                    timing_setup(cfg.evaluate, device))
        budget = apply_budget(cfg, strategy, model, data.info, stored)
        events = plan_events(cfg, steps_per_epoch(data.train, cfg.prune.batch_size))
    return Parts(cfg, data, device, loss_fn, make_model, strategy, events, origin, budget)


def apply_budget(cfg: RunConfig, strategy: Strategy, model: nn.Module, info: DataInfo,
                 searched: BudgetFit | None = None) -> BudgetFit | None:
    """strategy.target turned into strategy.sparsity on the model as built (or as `searched` found it: a latency
    budget), so the schedule ramps to that ratio."""
    budget = searched if searched is not None else find_budget(strategy, model, info)
    if budget is not None:
        assert cfg.strategy is not None
        cfg.strategy.sparsity = budget.sparsity
    return budget


def candidate_timer(ev: EvaluateConfig, sample: torch.Tensor, device: torch.device) -> Timer:
    """A latency candidate's milliseconds per sample on `device`, timed as the Speed table times batch-1 latency
    (`sample`: the evaluate stage's timing inputs; evaluate.latency_batch, threads, warm-up and stopping rule)."""

    def timer(model: nn.Module) -> dict[str, float]:
        timed = per_sample_ms({"candidate": model.to(device)}, sample, ev.latency_batch, ev.warmup, ev.repeats,
                              ev.threads, device, min_repeats=ev.min_repeats, target_spread=ev.target_spread)
        return timed["candidate"]

    return timer


def timing_setup(ev: EvaluateConfig, device: torch.device) -> str:
    """How the candidates are timed, for the budget's lines."""
    return f"at evaluate.latency_batch={ev.latency_batch} on {device}, {ev.threads} thread(s), as the Speed table"


def model_for_run(cfg: ModelConfig, info: DataInfo, seed: int) -> tuple[nn.Module, Fitted | None]:
    """The model a run starts from: built (seeded) for the data, with `model.weights` loaded and fitted to it.
    Every stage that rebuilds a model from a checkpoint builds it here too, and the checkpoint's values replace
    the weights."""
    torch.manual_seed(seed)
    model = build_model(cfg, info)
    return model, load_weights(model, cfg, info)


def original_kind(cfg: RunConfig, fitted: Fitted | None) -> str:
    """trained | loaded | untrained (Origin.original); train.epochs=0 cannot pass a replaced, untrained
    classifier off as the loaded model."""
    if cfg.train.epochs > 0:
        return "trained"
    if fitted is None:
        return "untrained"
    if fitted.head_replaced:  # its note comes first
        raise UserError(f"train.epochs=0 makes model.weights the original as loaded, but its classifier does not fit "
                        f"the data: {fitted.adapted[0]}; train it first (train.epochs >= 1)")
    return "loaded"


def check_forward(model: nn.Module, info: DataInfo, source: str) -> None:
    """One batch of two zero inputs of the data's shape through `model`, in training and in eval mode: a model that
    cannot take the data, or returns something other than one logit per class, is one line before any run."""
    x = info.example(2)
    expected = info.output_shape(2)
    for training in (True, False):
        model.train(training)
        try:
            with torch.no_grad():
                out = model(x)
        except Exception as error:  # the model's own code, whatever it raises: one line
            raise UserError(f"model: {source} does not run on the data's {info.describe} inputs "
                            f"({'training' if training else 'eval'} mode): {described(error)}") from None
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
            got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            what = "one logit per token and position" if info.vocab else "one logit per class"
            raise UserError(f"model: {source} returns {got} for 2 inputs in {'training' if training else 'eval'} "
                            f"mode; expected a tensor of shape {list(expected)} ({what})")


def plan_events(cfg: RunConfig, steps: int) -> list[Event]:
    """The prune stage's pruning steps, in optimizer steps (`steps` per epoch); fails on a bad schedule."""
    strategy, schedule = cfg.strategy, cfg.schedule
    assert strategy is not None
    threshold = strategy.mode == "threshold"
    initial, final = (0.0 if threshold else schedule.initial_sparsity), strategy.final_target
    if initial > final:
        found = f", found for strategy.target.{strategy.target.key}" if strategy.target.key is not None else ""
        raise UserError(f"schedule.initial_sparsity: got {initial}; must be <= strategy.sparsity ({final}{found})")
    if isinstance(schedule.rewind, int) and schedule.rewind > cfg.train.epochs:
        raise UserError(f"schedule.rewind: got {schedule.rewind}; train.epochs is {cfg.train.epochs}")
    per_unit = steps if schedule.unit == "epoch" else 1
    units = cfg.prune.epochs * steps // per_unit
    what = "threshold" if threshold else "sparsity"
    return [Event(e.t * per_unit, e.target) for e in build_events(schedule, units, initial, final, what)]
