"""Stage 2, prune: train on from the dense model while the schedule's pruning steps raise sparsity; pruned.pt."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from progprune_cli.data import Batches
from progprune_cli.pruning.strategies import PruneContext
from progprune_cli.pruning.masks import Masks
from progprune_cli.parts import Parts
from progprune_cli.stages.gate import AccuracyGate
from progprune_cli.stages.io import StageIO, write_json
from progprune_cli.stages.loop import Loop
from progprune_cli.stages.train import load_model


def prune(parts: Parts, io: StageIO, start_iteration: int) -> tuple[nn.Module, Masks, dict[str, Any]]:
    """The pruned model, its unit masks, and the step log (also saved as pruning.json)."""
    if io.done("pruned"):
        state = io.load("pruned")
        model = load_model(parts, io, "pruned")
        return model, state["unit_masks"], state["pruning"]
    cfg, strategy = parts.cfg, parts.strategy
    assert strategy is not None and cfg.strategy is not None
    model = load_model(parts, io, "original")
    rewind_state = io.load("rewind")["model"] if cfg.schedule.rewind is not None else None
    torch.manual_seed(cfg.seed + 1)
    ctx = PruneContext(Batches(parts.data.train, cfg.prune.batch_size, device=parts.device), parts.loss_fn,
                       parts.device, cfg.seed)
    loop = Loop(model, parts.data.train, parts.data.val, cfg.optimizer, parts.loss_fn, parts.device,
                cfg.prune.batch_size, io, "prune", cfg.seed + 1, iteration=start_iteration)
    unit_masks = strategy.initial_masks(model, parts.data.info)
    events = {e.t: e for e in parts.events}
    final = parts.events[-1].target if parts.events else 0.0
    steps: list[dict[str, Any]] = []
    notes: list[str] = []
    event_rows: list[dict[str, Any]] = []
    threshold_mode = cfg.strategy.mode == "threshold"
    spe = parts.steps_per_epoch(cfg.prune.batch_size)
    gate = AccuracyGate(parts, model, cfg.schedule.max_drop)

    def before_step(step: int) -> None:
        nonlocal unit_masks
        event = events.get(step)
        if event is None:
            return
        ctx.step = len(steps)
        admitted, accuracy = gate.admits()
        if not admitted:
            steps.append({"index": len(steps), "epoch": step // spe, "iteration": loop.iteration,
                          "target": event.target, "achieved": loop.achieved_sparsity, "removed": 0, "layers": {},
                          "held": True, "val_acc": accuracy})
            io.log(f"prune step {len(steps)} (epoch {step // spe}): held, val accuracy {accuracy:.2%} is more than "
                   f"{cfg.schedule.max_drop:.2%} below the dense model's {gate.reference:.2%}")
            return
        progress = 1.0 if final == 0 else event.target / final
        unit_masks, report = strategy.step(model, unit_masks, event.target, progress, ctx)
        if rewind_state is not None:
            model.load_state_dict(rewind_state)
            loop.reset_optimizer()
        loop.set_masks(strategy.to_param_masks(model, unit_masks))
        loop.target_sparsity = None if threshold_mode else event.target
        loop.achieved_sparsity = report.achieved
        epoch = step // spe
        steps.append({"index": len(steps), "epoch": epoch, "iteration": loop.iteration, "target": event.target,
                      "achieved": report.achieved, "removed": report.removed, "layers": report.layers})
        notes.extend(n for n in report.notes if n not in notes)
        what = f"threshold {event.target:.4g}" if threshold_mode else f"target {event.target:.2%}"
        done = "nothing removed" if report.removed == 0 else f"removed {report.removed}"
        io.log(f"prune step {len(steps)} (epoch {epoch}, {what}): {done}, sparsity now {report.achieved:.2%}"
               + ("; weights rewound" if rewind_state is not None else ""))
        for unit, layer in report.layers.items():
            target = "threshold" if layer["target"] is None else f"target {layer['target']:.2%}"
            io.detail(f"  {unit}: {target}, achieved {layer['achieved']:.2%}, {layer['nonzero']} kept")
        event_rows.append({"stage": "prune", "event": "prune", "epoch": epoch, "iteration": loop.iteration,
                           "target_sparsity": None if threshold_mode else event.target,
                           "achieved_sparsity": report.achieved})

    io.log(f"prune: {cfg.strategy.name} ({cfg.strategy.mode} mode, {cfg.strategy.scope} scope), "
           f"{cfg.schedule.name} schedule, {len(parts.events)} steps over {cfg.prune.epochs} epochs")
    loop.run(cfg.prune.epochs, before_step=before_step)
    held = sum(1 for s in steps if s.get("held"))
    if held:
        notes.append(f"schedule.max_drop={cfg.schedule.max_drop}: {held} of {len(steps)} steps held because val "
                     f"accuracy fell too far; final sparsity {loop.achieved_sparsity:.1%}"
                     + ("" if threshold_mode else f" of a {final:.1%} target"))
    # At one iteration the epoch that just ended comes first, then the step that starts the next epoch.
    rows = sorted(loop.rows + event_rows, key=lambda r: (r["iteration"], r["event"] == "prune"))
    io.write_rows("prune", rows)
    pruning = {"strategy": cfg.strategy.name, "granularity": strategy.granularity, "mode": cfg.strategy.mode,
               "target": final, "scope": cfg.strategy.scope, "schedule": cfg.schedule.name,
               "achieved_sparsity": loop.achieved_sparsity, "notes": notes, "steps": steps}
    write_json(io.run_dir / "pruning.json", pruning)
    io.save("pruned", {"model": model.state_dict(), "unit_masks": unit_masks,
                       "masks": strategy.to_param_masks(model, unit_masks), "stage": "prune", "pruning": pruning})
    return model, unit_masks, pruning
