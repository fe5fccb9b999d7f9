"""Turn one results.json dict into display tables (plain strings) that markdown and rich both render."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ORDER = ("original", "pruned", "finetuned", "compacted", "sparse_kernels", "dense_long")
LABELS = {"finetuned": "pruned+finetuned", "sparse_kernels": "sparse kernels", "dense_long": "dense, same epochs"}
DENSE_LINE = "dense baseline: no strategy given (add +strategy=NAME to prune)"
MASK_ONLY_NOTE = "mask-only: no kernel uses the zeros"
NA = "—"


@dataclass(frozen=True)
class Table:
    """A titled grid of display strings; renderers only lay it out and never compute numbers."""

    title: str
    headers: list[str]
    rows: list[list[str]]
    footnotes: list[str] = field(default_factory=list)


def dig(node: Any, *keys: str) -> Any:
    """`node[k1][k2]...`, or None where a level is missing: a partial record still renders."""
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


def spread(stat: dict[str, float] | None) -> str:
    """`median (p10–p90)`: a timing is shown with its spread, never alone."""
    if not stat:
        return NA
    return f"{num(stat.get('median'))} ({num(stat.get('p10'))}–{num(stat.get('p90'))})"


def kb(n: int | None) -> str:
    return NA if n is None else f"{n / 1000:.1f}"


def label(key: str, model: dict[str, Any]) -> str:
    return LABELS.get(key, key if key in ORDER else str(model.get("label", key)))


def ordered_models(results: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The models present in the contract's order; unknown extra entries follow, so nothing is hidden."""
    models = results.get("models") or {}
    keys = [k for k in ORDER if k in models] + [k for k in models if k not in ORDER]
    return [(k, models[k]) for k in keys]


def accuracy_table(results: dict[str, Any]) -> Table:
    models = results.get("models") or {}
    base = dig(models, "original", "accuracy", "test")
    rows = []
    for key, m in ordered_models(results):
        test = dig(m, "accuracy", "test")
        delta = NA if key == "original" else gap(test, base)
        rows.append([label(key, m), pct(dig(m, "accuracy", "train")), pct(dig(m, "accuracy", "val")),
                     pct(test), num(dig(m, "loss", "test")), delta])
    notes: list[str] = []
    fin, long = dig(models, "finetuned", "accuracy", "test"), dig(models, "dense_long", "accuracy", "test")
    if fin is not None and long is not None:
        notes.append(f"finetune vs a dense model trained as long: {gap(fin, long)} points "
                     f"({dig(models, 'dense_long', 'epochs')} epochs; the honest recovery figure)")
    elif fin is not None:
        notes.append("no dense model trained as long was evaluated, so recovery is only measured against the original")
    return Table("Accuracy", ["model", "train acc", "val acc", "test acc", "test loss", "Δ test vs original (points)"],
                 rows, notes)


def speed_note(m: dict[str, Any]) -> str:
    speedup = dig(m, "macs", "theoretical_speedup")
    return MASK_ONLY_NOTE if m.get("mask_only") and speedup is not None and speedup > 1 else ""


def latency_setup(lat: dict[str, Any]) -> str:
    return (f"measured on {lat.get('device')}, {lat.get('threads')} thread(s), eval batch size "
            f"{lat.get('eval_batch_size')} over {lat.get('eval_samples')} samples; {lat.get('warmup')} warm-up + "
            f"{lat.get('repeats')} timed repeats, median (p10–p90) over the repeats")


def speed_table(results: dict[str, Any]) -> Table:
    rows, setups = [], {}
    for key, m in ordered_models(results):
        lat = m.get("latency") or {}
        rows.append([label(key, m), spread(lat.get("eval_runtime_s")), spread(lat.get("batch1_ms")),
                     NA if lat.get("throughput_sps") is None else f"{lat['throughput_sps']:,.0f}",
                     times(lat.get("measured_speedup")), times(dig(m, "macs", "theoretical_speedup")),
                     speed_note(m)])
        if lat:
            setups.setdefault(latency_setup(lat), []).append(label(key, m))
    # One setup line when every model was timed alike (the normal case); otherwise say which model ran how.
    notes = [s if len(setups) == 1 else f"{', '.join(names)}: {s}" for s, names in setups.items()]
    notes.append("measured speedup = original median runtime / this median; "
                 "theoretical = dense MACs / effective MACs (not measured)")
    return Table("Speed", ["model", "eval runtime (s)", "batch-1 latency (ms)", "throughput (samples/s)",
                           "measured speedup", "MAC speedup (theoretical)", "note"], rows, notes)


def params_table(results: dict[str, Any]) -> Table:
    rows = []
    for key, m in ordered_models(results):
        p, size = m.get("params") or {}, m.get("size_bytes") or {}
        rows.append([label(key, m), count(p.get("total")), count(p.get("nonzero")), count(p.get("physical")),
                     pct(p.get("sparsity")), times(p.get("compression")),
                     " / ".join(kb(size.get(k)) for k in ("dense", "sparse", "compacted"))])
    notes = ["nonzero = weights the mask keeps; physical = numbers actually stored (smaller only after compaction)",
             "compression = total / nonzero; size on disk in KB of 1000 bytes"]
    return Table("Parameters", ["model", "params", "nonzero", "physical", "sparsity", "compression",
                                "size KB (dense / sparse / compacted)"], rows, notes)


def layers_table(results: dict[str, Any]) -> Table | None:
    layers = results.get("layers") or []
    if not layers:
        return None
    rows = [[str(x.get("name")), str(x.get("type")), "×".join(str(d) for d in x.get("shape") or []) or NA,
             count(x.get("params")), count(x.get("nonzero")), pct(x.get("sparsity")),
             count(x.get("macs_dense")), count(x.get("macs_effective"))] for x in layers]
    return Table("Per-layer", ["layer", "type", "shape", "params", "nonzero", "sparsity", "MACs dense",
                               "MACs effective"], rows,
                 ["MACs effective counts only multiplications by kept weights (theoretical)"])


def steps_table(results: dict[str, Any]) -> Table | None:
    pruning = results.get("pruning")
    if not pruning:
        return None
    # In threshold mode a step's target is a weight magnitude, not a fraction.
    target = pct if pruning.get("mode", "sparsity") == "sparsity" else num
    rows = [[str(s.get("index")), str(s.get("epoch")), str(s.get("iteration")), target(s.get("target")),
             pct(s.get("achieved")), _removed(s)]
            for s in pruning.get("steps") or []]
    return Table("Pruning steps", ["step", "epoch", "iteration", "target", "achieved", "removed"], rows,
                 [str(n) for n in pruning.get("notes") or []])


def _removed(step: dict[str, Any]) -> str:
    if step.get("held"):
        return f"held (val acc {pct(step.get('val_acc'))}: below schedule.max_drop)"
    return "nothing removed" if step.get("removed") == 0 else count(step.get("removed"))


def faster(key: str, m: dict[str, Any], original: dict[str, Any]) -> str:
    """Yes only when the p10–p90 spreads do not overlap: a 1.03× median alone is timing noise."""
    lat, base = m.get("latency") or {}, original.get("latency") or {}
    speedup = lat.get("measured_speedup")
    figures = f"({label(key, m)} {times(speedup)} measured, {times(dig(m, 'macs', 'theoretical_speedup'))} theoretical)"
    mine, ref = lat.get("eval_runtime_s") or {}, base.get("eval_runtime_s") or {}
    if speedup is None or None in (mine.get("p90"), ref.get("p10")):
        return f"not measured {figures}"
    if speedup > 1 and mine["p90"] < ref["p10"]:
        return f"yes {figures}"
    if m.get("mask_only"):
        return f"no: mask-only {figures}"
    return f"no: within the run-to-run spread {figures}"


def answers(results: dict[str, Any]) -> list[str]:
    """The three questions the seed's tables answer, each in one line about the pruned+finetuned model."""
    if not results.get("pruning"):
        return [DENSE_LINE]
    models = results.get("models") or {}
    orig, fin = models.get("original") or {}, models.get("finetuned") or {}
    test, base = dig(fin, "accuracy", "test"), dig(orig, "accuracy", "test")
    cost = (f"accuracy cost of pruning: pruned+finetuned {pct(test)} test vs original {pct(base)} "
            f"({gap(test, base)} points)")
    if "dense_long" in models:
        long = dig(models["dense_long"], "accuracy", "test")
        cost += f"; vs a dense model trained as long {pct(long)} ({gap(test, long)} points)"
    p = fin.get("params") or {}
    left = (f"parameters left: {count(p.get('nonzero'))} of {count(p.get('total'))} nonzero "
            f"({pct(1 - p['sparsity']) if p.get('sparsity') is not None else NA}), "
            f"{count(p.get('physical'))} physical" + (" (zeros still stored)" if fin.get("mask_only") else ""))
    if "compacted" in models:
        left += f"; compacted: {count(dig(models['compacted'], 'params', 'physical'))} physical"
    keys = [k for k in ("finetuned", "compacted", "sparse_kernels") if k in models]
    speed = "did it get faster: " + ("; ".join(faster(k, models[k], orig) for k in keys) or "no pruned model measured")
    return [cost, left, speed]


def all_tables(results: dict[str, Any]) -> list[Table]:
    """The seed's three tables, then per-layer and pruning steps where the run has them."""
    extra = [t for t in (layers_table(results), steps_table(results)) if t is not None]
    return [accuracy_table(results), speed_table(results), params_table(results), *extra]
