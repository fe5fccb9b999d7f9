"""Stage 2, prune: train on from the dense model while the schedule's pruning steps raise sparsity; pruned.pt."""

from __future__ import annotations

import copy
import time
from typing import Any

import torch
from torch import nn

from progprune_cli.config import RunConfig
from progprune_cli.pruning.strategies.calibration import calibration_loader
from progprune_cli.pruning.strategies import PruneContext
from progprune_cli.results.schema import PruningLog, PruningStep, StepLayer
from progprune_cli.stages.base import STAGES, Produced, Pruned, RunContext, Stage, resume_loop, stage_seed
from progprune_cli.stages.gate import AccuracyGate
from progprune_cli.stages.io import write_json
from progprune_cli.stored_budget import to_record


@STAGES.register("prune")
class Prune(Stage):
    """Progressive pruning along the schedule's events (in optimizer steps of this stage)."""

    name = "prune"
    after = ("train",)
    mask_only = True

    @classmethod
    def applies(cls, cfg: RunConfig) -> bool:
        return cfg.strategy is not None

    def model_of(self, result: Pruned) -> nn.Module:
        return result.model

    def load(self, run: RunContext, produced: Produced, final: dict[str, Any]) -> Pruned:
        return Pruned(run.model_from(final), final["unit_masks"], final["masks"],
                      PruningLog.from_json(final["pruning"], path="pruning"))

    def run(self, run: RunContext, produced: Produced, progress: dict[str, Any] | None) -> Pruned:
        parts, io = run.parts, run.io
        cfg, strategy = parts.cfg, parts.strategy
        assert strategy is not None and cfg.strategy is not None and produced.original is not None
        model = copy.deepcopy(produced.original.model)  # the original stays as it was, for evaluation
        rewind_state = io.load("rewind")["model"] if cfg.schedule.rewind is not None else None
        # Scores are computed on un-augmented images: a random crop must not decide what is pruned.
        ctx = PruneContext(calibration_loader(parts.data.train_eval, cfg.prune.batch_size, cfg.seed, parts.device),
                           parts.loss_fn, parts.device, cfg.seed)
        log: dict[str, Any] = {"unit_masks": strategy.initial_masks(model, parts.data.info), "steps": [],
                               "notes": [], "event_rows": [], "reference": None}
        # The step records are kept typed; the progress checkpoint holds them as plain values (weights_only).
        loop = run.loop("prune", model, cfg.prune, save=lambda: io.save(self.progress_name(), {
            "loop": loop.state_dict(), "log": {**log, "steps": [step.to_json() for step in log["steps"]]}}))
        gate = AccuracyGate(parts, model, cfg.schedule.max_drop, run.world, reference=None if progress is None else
                            progress["log"]["reference"])
        log["reference"] = gate.reference
        if progress is None:
            torch.manual_seed(stage_seed(cfg.seed, "prune"))
        else:
            log.update(progress["log"], steps=[PruningStep.from_json(step, path="steps") for step in
                                               progress["log"]["steps"]])
        resume_loop(run, loop, progress)
        events = {e.t: e for e in parts.events}
        final = parts.events[-1].target if parts.events else 0.0
        threshold_mode = cfg.strategy.mode == "threshold"
        spe = loop.per_epoch

        def before_step(step: int) -> None:
            event = events.get(step)
            if event is None:
                return
            steps = log["steps"]
            ctx.step = len(steps)
            admitted, accuracy = gate.admits()
            epoch = step // spe
            if not admitted:
                steps.append(PruningStep(index=len(steps), epoch=epoch, iteration=loop.iteration, target=event.target,
                                         achieved=loop.achieved_sparsity, removed=0, held=True, val_acc=accuracy))
                io.log(f"prune step {len(steps)} (epoch {epoch}): held, val accuracy {accuracy:.2%} is more than "
                       f"{cfg.schedule.max_drop:.2%} below the dense model's {gate.reference:.2%}")
                return
            progress_ = 1.0 if final == 0 else event.target / final
            started = time.perf_counter()
            log["unit_masks"], report = strategy.step(model, log["unit_masks"], event.target, progress_, ctx)
            seconds = round(time.perf_counter() - started, 3)  # calibration passes included
            if rewind_state is not None:
                model.load_state_dict(rewind_state)
                loop.reset_optimizer()
            loop.set_masks(strategy.to_param_masks(model, log["unit_masks"]))
            loop.target_sparsity = None if threshold_mode else event.target
            loop.achieved_sparsity = report.achieved
            steps.append(PruningStep(index=len(steps), epoch=epoch, iteration=loop.iteration, target=event.target,
                                     achieved=report.achieved, removed=report.removed,
                                     layers={unit: StepLayer(**layer) for unit, layer in report.layers.items()},
                                     seconds=seconds))
            fresh = [n for n in report.notes if n not in log["notes"]]
            log["notes"].extend(fresh)
            what = f"threshold {event.target:.4g}" if threshold_mode else f"target {event.target:.2%}"
            done = "nothing removed" if report.removed == 0 else f"removed {report.removed}"
            done += ", kept weights updated" if strategy.updates_weights and report.removed else ""
            io.log(f"prune step {len(steps)} (epoch {epoch}, {what}): {done}, sparsity now {report.achieved:.2%}"
                   + ("; weights rewound" if rewind_state is not None else "") + f" ({seconds:.2f} s)")
            for note in fresh:
                io.log(f"  note: {note}")
            for unit, layer in report.layers.items():
                target = "threshold" if layer["target"] is None else f"target {layer['target']:.2%}"
                io.detail(f"  {unit}: {target}, achieved {layer['achieved']:.2%}, {layer['nonzero']} kept")
            log["event_rows"].append({"stage": "prune", "event": "prune", "epoch": epoch,
                                      "iteration": loop.iteration,
                                      "target_sparsity": None if threshold_mode else event.target,
                                      "achieved_sparsity": report.achieved})

        if progress is None:
            io.log(f"prune: {cfg.strategy.name} ({cfg.strategy.mode} mode, {cfg.strategy.scope} scope), "
                   f"{cfg.schedule.name} schedule, {len(parts.events)} steps over {cfg.prune.epochs} epochs")
        if cfg.prune.epochs == 0 and not log["steps"]:
            before_step(0)  # one-shot: the single step, with no optimizer step after it in this stage
        loop.run(cfg.prune.epochs, before_step=before_step)
        steps, notes = log["steps"], list(log["notes"])
        budget = parts.budget
        if budget is not None:
            notes.insert(0, budget.line())
        held = sum(1 for s in steps if s.held)
        if held:
            notes.append(f"schedule.max_drop={cfg.schedule.max_drop}: {held} of {len(steps)} steps held because val "
                         f"accuracy fell too far; final sparsity {loop.achieved_sparsity:.1%}"
                         + ("" if threshold_mode else f" of a {final:.1%} target"))
        # At one iteration the epoch that just ended comes first, then the step that starts the next epoch.
        rows = sorted(loop.rows + log["event_rows"], key=lambda r: (r["iteration"], r["event"] == "prune"))
        io.write_rows("prune", rows)
        pruning = PruningLog(strategy=cfg.strategy.name, granularity=strategy.granularity, mode=cfg.strategy.mode,
                             target=final, scope=cfg.strategy.scope, schedule=cfg.schedule.name,
                             achieved_sparsity=loop.achieved_sparsity, notes=tuple(notes), steps=tuple(steps),
                             budget=None if budget is None else to_record(budget))
        write_json(io.run_dir / "pruning.json", pruning.to_json())
        masks = strategy.to_param_masks(model, log["unit_masks"])
        io.save(self.output, {"model": model.state_dict(), "unit_masks": log["unit_masks"], "masks": masks,
                              "stage": "prune", "pruning": pruning.to_json(), "rows": rows})
        return Pruned(model, log["unit_masks"], masks, pruning)
