"""Turn one Results record into display tables (plain strings) that markdown and rich both render."""

from __future__ import annotations

import math
from typing import Any

from progprune_cli.report.render import Table
from progprune_cli.results.schema import DEPLOYED_MODELS, Latency, ModelRecord, PruningStep, Results, Splits, Spread
from progprune_cli.results.schema import model_label as label

DENSE_LINE = "dense baseline: no strategy given (add +strategy=NAME to prune)"
MASK_ONLY_NOTE = "mask-only: no kernel uses the zeros"
NA = "—"
ORT = "onnxruntime"  # evaluate.backends' other backend: its key in each MODEL's `backends`


def dig(node: Any, *keys: str) -> Any:
    """`node[k1][k2]...` of a plain dict (the config), or None where a level is missing."""
    for key in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def pct(x: float | None) -> str:
    return NA if x is None else f"{100 * x:.1f}%"


def gap(a: float | None, b: float | None) -> str:
    """`a - b` (fractions) in signed percentage points; `+ 0.0` keeps a rounded zero from reading -0.0."""
    return NA if a is None or b is None else f"{round(100 * (a - b), 1) + 0.0:+.1f}"


def count(n: int | None) -> str:
    return NA if n is None else f"{int(n):,}"


def times(x: float | None) -> str:
    return NA if x is None else f"{x:.2f}×"


def num(x: float | None) -> str:
    """Three significant digits: runtimes span 0.001 s (toy nets) to minutes."""
    return NA if x is None else f"{x:.3g}"


def spread(stat: Spread) -> str:
    """`median (p10–p90)`: a timing is shown with its spread, never alone."""
    if stat == Spread():
        return NA
    return f"{num(stat.median)} ({num(stat.p10)}–{num(stat.p90)})"


def kb(n: int | None) -> str:
    return NA if n is None else f"{n / 1000:.1f}"


def mb(n: int | None) -> str:
    """Megabytes of 10^6 bytes, as kb() counts kilobytes of 1000."""
    return NA if n is None else f"{n / 1e6:,.1f}"


def is_language_model(results: Results) -> bool:
    """Whether the run's models are language models (their records carry perplexity)."""
    return any(m.perplexity is not None for m in results.models.values())


def ppl(x: float | None) -> str:
    return NA if x is None else f"{x:.2f}" if x < 1e6 else f"{x:.3g}"


def ppl_gap(a: float | None, b: float | None) -> str:
    return NA if a is None or b is None else f"{a - b:+.2f}" if max(a, b) < 1e6 else f"{a - b:+.3g}"


def bits(loss: float | None) -> str:
    """Bits per token: the mean loss (nats per token) over ln 2."""
    return NA if loss is None else f"{loss / math.log(2):.3f}"


def train_subset_note(results: Results) -> list[str]:
    """Where the train figures come from a sample of the training split (evaluate.train_samples), say so."""
    run = results.run
    if run.train_eval_samples is None or run.train_samples is None or run.train_eval_samples >= run.train_samples:
        return []
    return [f"train figures on {run.train_eval_samples:,} of the {run.train_samples:,} training samples (seeded, the "
            f"same for every model; evaluate.train_samples); val and test on every sample"]


def perplexity_table(results: Results) -> Table:
    """accuracy_table for language models: perplexity on each split, bits per token and next-token accuracy."""
    models = results.models
    none = Splits()
    base = (models["original"].perplexity or none).test if "original" in models else None
    rows = []
    for key, m in results.ordered_models():
        p = m.perplexity or none
        delta = NA if key == "original" else ppl_gap(p.test, base)
        rows.append([label(key, m), ppl(p.train), ppl(p.val), ppl(p.test), bits(m.loss.test), pct(m.accuracy.test),
                     delta])
    notes = ["perplexity: exp of the mean loss per token (lower is better); bits per token: that loss / ln 2",
             *train_subset_note(results)]
    fin = (models["finetuned"].perplexity or none).test if "finetuned" in models else None
    long = (models["dense_long"].perplexity or none).test if "dense_long" in models else None
    if fin is not None and long is not None:
        notes.append(f"finetune vs a dense model trained as long: {ppl_gap(fin, long)} test perplexity "
                     f"({models['dense_long'].epochs} epochs; the honest recovery figure)")
    return Table(["model", "train ppl", "val ppl", "test ppl", "test bits/token", "test acc (next token)",
                  "Δ test ppl vs original"], rows, title="Perplexity", footnotes=notes)


def accuracy_table(results: Results) -> Table:
    if is_language_model(results):
        return perplexity_table(results)
    models = results.models
    base = models["original"].accuracy.test if "original" in models else None
    rows = []
    for key, m in results.ordered_models():
        delta = NA if key == "original" else gap(m.accuracy.test, base)
        rows.append([label(key, m), pct(m.accuracy.train), pct(m.accuracy.val), pct(m.accuracy.test),
                     num(m.loss.test), delta])
    notes: list[str] = train_subset_note(results)
    fin = models["finetuned"].accuracy.test if "finetuned" in models else None
    long = models["dense_long"].accuracy.test if "dense_long" in models else None
    if fin is not None and long is not None:
        notes.append(f"finetune vs a dense model trained as long: {gap(fin, long)} points "
                     f"({models['dense_long'].epochs} epochs; the honest recovery figure)")
    elif fin is not None:
        notes.append("no dense model trained as long was evaluated, so recovery is only measured against the original")
    return Table(["model", "train acc", "val acc", "test acc", "test loss", "Δ test vs original (points)"], rows,
                 title="Accuracy", footnotes=notes)


def speed_note(m: ModelRecord) -> str:
    speedup = m.macs.theoretical_speedup
    return MASK_ONLY_NOTE if m.mask_only and speedup is not None and speedup > 1 else ""


def latency_setup(lat: Latency) -> str:
    return (f"measured on {lat.device}, {lat.threads} thread(s), eval batch size {lat.eval_batch_size} over "
            f"{lat.eval_samples} samples; {lat.warmup} warm-up + {repeats_made(lat)}, median (p10–p90) "
            "over the repeats")


def repeats_made(lat: Latency) -> str:
    """How many timed passes there were and why that many (files before the stopping rule have only `repeats`)."""
    if lat.target_spread is None or lat.max_repeats is None:
        return f"{lat.repeats} timed repeats"
    made = (f"{lat.repeats}" if lat.batch1_repeats in (None, lat.repeats)
            else f"{lat.repeats} (per-sample: {lat.batch1_repeats})")
    return (f"{made} timed repeats ({lat.min_repeats}–{lat.max_repeats}: stopped once every model's p10–p90 was "
            f"within {lat.target_spread:.0%} of its median, or at {lat.max_repeats})")


def backend(m: ModelRecord, name: str = ORT) -> Latency | None:
    """The model's timing in another backend than torch (evaluate.backends), if it has one."""
    return (m.backends or {}).get(name)


def backend_setup(results: Results) -> str:
    """How the onnxruntime figures were made, from the first record that has them."""
    timed = [(m.latency, lat) for _, m in results.ordered_models() if (lat := backend(m)) is not None]
    beside = ("in turns with the torch models" if timed[0][0].device == "cpu"
              else f"in turns on the CPU (the torch models ran on {timed[0][0].device})")
    return (f"{ORT}: each model exported to ONNX (checkpoints/onnx/, checked against PyTorch) and run by a CPU "
            f"session with {timed[0][1].threads} intra-op thread(s), 1 inter-op, sequential, timed {beside} with "
            f"the same warm-up and repeats; {ORT} speedup = the original's {ORT} median / this median")


def speed_table(results: Results) -> Table:
    # A peak-memory column only where the file has one (CUDA runs), so CPU tables stay as they were.
    memory = any(m.latency.peak_memory_bytes is not None for _, m in results.ordered_models())
    # onnxruntime columns only where the run timed a model there (evaluate.backends), so other tables stay as they were.
    ort = any(backend(m) is not None for _, m in results.ordered_models())
    rows, setups = [], {}
    for key, m in results.ordered_models():
        lat, other = m.latency, backend(m) or Latency()
        rows.append([label(key, m), spread(lat.eval_runtime_s), spread(lat.batch1_ms),
                     NA if lat.throughput_sps is None else f"{lat.throughput_sps:,.0f}",
                     *([mb(lat.peak_memory_bytes)] if memory else []),
                     times(lat.measured_speedup), times(m.macs.theoretical_speedup),
                     *([spread(other.eval_runtime_s), times(other.measured_speedup)] if ort else []), speed_note(m)])
        if lat != Latency():  # a model the file has no timing for adds no setup line
            setups.setdefault(latency_setup(lat), []).append(label(key, m))
    # One setup line when every model was timed alike (the normal case); otherwise say which model ran how.
    notes = [s if len(setups) == 1 else f"{', '.join(names)}: {s}" for s, names in setups.items()]
    notes.append("measured speedup = original median runtime / this median; "
                 "theoretical = dense MACs / effective MACs (not measured)")
    notes += [backend_setup(results)] if ort else []
    block = dig(results.config, "dataset", "block_size")
    if is_language_model(results) and isinstance(block, int):
        notes.append(f"a sample is one sequence of {block} tokens: tokens/s = throughput × {block}; "
                     "batch-1 latency is per sequence")
    notes += budget_notes(results, ("macs", "latency_ms"))
    notes += list(results.notes)  # the evaluate stage's notes: a row or a backend figure it could not make, and why
    return Table(["model", "eval runtime (s)", "batch-1 latency (ms)", "throughput (samples/s)",
                  *(["peak GPU memory (MB)"] if memory else []), "measured speedup", "MAC speedup (theoretical)",
                  *([f"{ORT} runtime (s)", f"{ORT} speedup"] if ort else []), "note"], rows,
                 title="Speed", footnotes=notes)


def budget_notes(results: Results, keys: tuple[str, ...]) -> list[str]:
    """strategy.target (when its key is one of `keys`) against what the deployed model (compacted, else the final
    one) achieved in this run's own measurement."""
    budget = results.pruning.budget if results.pruning is not None else None
    final = results.final_model()
    if budget is None or budget.key not in keys or budget.target is None or final is None:
        return []
    name = next(m for m in (*DEPLOYED_MODELS, final) if m in results.models)
    m, where = results.models[name], f"strategy.target.{budget.key}={budget.target:g}"
    if budget.key == "macs":
        return [f"{where}: target {times(budget.target)} fewer MACs, {label(name, m)} "
                f"{times(m.macs.theoretical_speedup)} (theoretical)"]
    if budget.key == "params":
        original = results.models.get("original")
        kept = m.params.nonzero if m.mask_only else m.params.physical
        share = kept / original.params.physical if original and kept is not None and original.params.physical else None
        return [f"{where}: target {pct(budget.target)} of the parameters kept, {label(name, m)} {pct(share)}"]
    return [f"{where}: target at most {num(budget.target)} ms per sample; the search measured {num(budget.achieved)} "
            f"ms at strategy.sparsity {num(budget.sparsity)} before training, {label(name, m)} "
            f"{num(m.latency.batch1_ms.median)} ms here (batch-1 latency; other load on the machine between the two "
            "timings moves it)"]


def params_table(results: Results) -> Table:
    rows = []
    for key, m in results.ordered_models():
        p, size = m.params, m.size_bytes
        rows.append([label(key, m), count(p.total), count(p.nonzero), count(p.physical), pct(p.sparsity),
                     times(p.compression), " / ".join(kb(n) for n in (size.dense, size.sparse, size.compacted))])
    notes = ["nonzero = weights the mask keeps; physical = numbers actually stored (smaller only after compaction)",
             "compression = total / nonzero; size on disk in KB of 1000 bytes", *budget_notes(results, ("params",))]
    return Table(["model", "params", "nonzero", "physical", "sparsity", "compression",
                  "size KB (dense / sparse / compacted)"], rows, title="Parameters", footnotes=notes)


def layers_table(results: Results) -> Table | None:
    if not results.layers:
        return None
    rows = [[str(x.name), str(x.type), "×".join(str(d) for d in x.shape) or NA, count(x.params), count(x.nonzero),
             pct(x.sparsity), count(x.macs_dense), count(x.macs_effective)] for x in results.layers]
    return Table(["layer", "type", "shape", "params", "nonzero", "sparsity", "MACs dense", "MACs effective"], rows,
                 title="Per-layer",
                 footnotes=["MACs effective counts only multiplications by kept weights (theoretical)"])


def steps_table(results: Results) -> Table | None:
    pruning = results.pruning
    if pruning is None:
        return None
    # In threshold mode a step's target is a weight magnitude, not a fraction.
    target = pct if (pruning.mode or "sparsity") == "sparsity" else num
    rows = [[str(s.index), str(s.epoch), str(s.iteration), target(s.target), pct(s.achieved), _removed(s)]
            for s in pruning.steps]
    return Table(["step", "epoch", "iteration", "target", "achieved", "removed"], rows, title="Pruning steps",
                 footnotes=list(pruning.notes))


def _removed(step: PruningStep) -> str:
    if step.held:
        return f"held (val acc {pct(step.val_acc)}: below schedule.max_drop)"
    return "nothing removed" if step.removed == 0 else count(step.removed)


def faster(key: str, m: ModelRecord, original: ModelRecord) -> str:
    """Yes only when the p10–p90 spreads do not overlap: a 1.03× median alone is timing noise."""
    speedup = m.latency.measured_speedup
    figures = f"({label(key, m)} {times(speedup)} measured, {times(m.macs.theoretical_speedup)} theoretical)"
    mine, ref = m.latency.eval_runtime_s, original.latency.eval_runtime_s
    if speedup is None or mine.p90 is None or ref.p10 is None:
        return f"not measured {figures}"
    if speedup > 1 and mine.p90 < ref.p10:
        return f"yes {figures}"
    if m.mask_only:
        return f"no: mask-only {figures}"
    return f"no: within the run-to-run spread {figures}"


def answers(results: Results) -> list[str]:
    """The three questions the seed's tables answer, each in one line about the pruned+finetuned model."""
    if results.pruning is None:
        return [DENSE_LINE]
    models = results.models
    orig, fin = models.get("original", ModelRecord()), models.get("finetuned", ModelRecord())
    if is_language_model(results):
        none = Splits()
        test, base = (fin.perplexity or none).test, (orig.perplexity or none).test
        cost = (f"perplexity cost of pruning: {label('finetuned', fin)} {ppl(test)} test vs original {ppl(base)} "
                f"({ppl_gap(test, base)})")
        if "dense_long" in models:
            long = (models["dense_long"].perplexity or none).test
            cost += f"; vs a dense model trained as long {ppl(long)} ({ppl_gap(test, long)})"
    else:
        test, base = fin.accuracy.test, orig.accuracy.test
        cost = (f"accuracy cost of pruning: {label('finetuned', fin)} {pct(test)} test vs original {pct(base)} "
                f"({gap(test, base)} points)")
        if "dense_long" in models:
            long = models["dense_long"].accuracy.test
            cost += f"; vs a dense model trained as long {pct(long)} ({gap(test, long)} points)"
    p = fin.params
    left = (f"parameters left: {count(p.nonzero)} of {count(p.total)} nonzero "
            f"({pct(1 - p.sparsity) if p.sparsity is not None else NA}), "
            f"{count(p.physical)} physical" + (" (zeros still stored)" if fin.mask_only else ""))
    if "compacted" in models:
        left += f"; compacted: {count(models['compacted'].params.physical)} physical"
    if dig(results.config, "finetune", "epochs") == 0:
        cost += "; no retraining (finetune.epochs=0" + (", prune.epochs=0: one-shot)" if dig(
            results.config, "prune", "epochs") == 0 else ")")
    keys = [k for k in ("finetuned", *DEPLOYED_MODELS) if k in models]
    speed = "did it get faster: " + ("; ".join(faster(k, models[k], orig) for k in keys) or "no pruned model measured")
    return [cost, left, speed]
