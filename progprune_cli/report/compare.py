"""Turn RunRecords into a compare table: headline figures, only-changed config, --where, --sort, --baseline, --diff."""

from __future__ import annotations

import contextlib
import json
import operator
import re
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from progprune_cli.errors import UserError
from progprune_cli.report.render import Table, is_number
from progprune_cli.report.runs import RunRecord
from progprune_cli.report.tables import ORT
from progprune_cli.results.schema import DEPLOYED_MODELS, Splits

FIXED = ("run", "status")
HEADLINE = ("test_acc", "val_acc", "test_acc_vs_orig", "sparsity", "nonzero", "physical",
            "theoretical_speedup", "measured_speedup", "runtime_median_s")
ORT_COLUMN = "ort_speedup"  # shown only when a run timed its models in onnxruntime (evaluate.backends)
# The deployed model's measured ms per sample (evaluate.latency_batch), beside strategy.target.latency_ms: shown only
# when a run had that budget, so other tables stay as they were.
LATENCY_COLUMN = "latency_ms"
# --baseline: differences (run - base) for these; runtime becomes a ratio, speedup_vs_base (measured).
BASE_DIFFS = ("test_acc", "val_acc", "sparsity", "nonzero")
BASE_COLUMNS = tuple(f"{key}_vs_base" for key in BASE_DIFFS) + ("speedup_vs_base",)
OPS: dict[str, Callable[[Any, Any], bool]] = {">=": operator.ge, "<=": operator.le, "==": operator.eq,
                                               "!=": operator.ne, ">": operator.gt, "<": operator.lt}
_WHERE = re.compile(r"^\s*([^\s<>=!]+)\s*(>=|<=|==|!=|>|<)\s*(\S.*?)\s*$")
_WHERE_HELP = "expected KEY OP VALUE with OP one of > >= < <= == != (e.g. 'sparsity>0.8')"
# Timestamps always differ between two runs; showing them in --diff would only hide the real differences.
_DIFF_SKIP = {"run.id", "run.started", "run.finished"}


def _sub(a: Any, b: Any) -> float | int | None:
    # Rounded so 0.94 - 0.95 prints and serialises as -0.01, not -0.010000000000000009.
    return round(a - b, 10) if is_number(a) and is_number(b) else None


def headline(record: RunRecord) -> dict[str, Any]:
    """The final model's figures (finetuned, else pruned, else original); latency and physical size are
    taken from the deployed model (compacted or sparse_kernels when present), where pruning pays off."""
    doc = record.document
    final = doc.final_model() if doc is not None else None
    if doc is None or final is None:
        return {}
    models = doc.models
    fin = models[final]
    deployed = models[next(m for m in (*DEPLOYED_MODELS, final) if m in models)]
    ppl = fin.perplexity or Splits()  # language models only
    row = {"test_acc": fin.accuracy.test, "val_acc": fin.accuracy.val, "test_ppl": ppl.test, "val_ppl": ppl.val,
           "sparsity": fin.params.sparsity,
           "nonzero": fin.params.nonzero, "physical": deployed.params.physical, "macs_effective": fin.macs.effective,
           "theoretical_speedup": fin.macs.theoretical_speedup,
           "measured_speedup": deployed.latency.measured_speedup,
           "runtime_median_s": deployed.latency.eval_runtime_s.median}
    # evaluate.backends onnxruntime: the deployed model's speedup over the original, both in onnxruntime (the
    # compacted model where it was timed there, else the final one; the sparse-kernel row has no ONNX form).
    timed = next((models[m] for m in (*DEPLOYED_MODELS, final) if m in models and models[m].backends), None)
    ort = (timed.backends or {}).get(ORT) if timed is not None else None
    row[ORT_COLUMN] = ort.measured_speedup if ort is not None else None
    budget = doc.pruning.budget if doc.pruning is not None else None
    if budget is not None and budget.key == "latency_ms":
        row[LATENCY_COLUMN] = deployed.latency.batch1_ms.median
    for suffix, other in (("orig", "original"), ("long", "dense_long")):
        row[f"test_acc_vs_{suffix}"] = _sub(row["test_acc"], models[other].accuracy.test if other in models else None)
    return {key: value for key, value in row.items() if value is not None}


def comparable_text(value: Any) -> str:
    """A config value as text that compares equal exactly when the values do (missing and null alike)."""
    return json.dumps(value, sort_keys=True, default=str)


def config_columns(records: list[RunRecord], all_params: bool = False) -> list[str]:
    """Config keys whose value differs between the runs that have a config (all keys with all_params). A key
    missing from one config and null in another is unset in both: not a difference (dataset.limit exists only for
    some datasets)."""
    configs = [r.config for r in records if r.config]
    keys = list(dict.fromkeys(key for config in configs for key in config))
    if all_params:
        return keys
    return [k for k in keys if len({comparable_text(c.get(k)) for c in configs}) > 1]


def build_row(record: RunRecord, label: str, base: dict[str, Any] | None = None) -> dict[str, Any]:
    row: dict[str, Any] = dict(record.config)
    row.update(run=label, status=record.status, **headline(record))
    if base is not None:
        for key in BASE_DIFFS:
            row[f"{key}_vs_base"] = _sub(row.get(key), base.get(key))
        mine, theirs = row.get("runtime_median_s"), base.get("runtime_median_s")
        if is_number(mine) and is_number(theirs) and mine > 0:
            row["speedup_vs_base"] = round(theirs / mine, 10)
    if record.error:
        row["error"] = record.error
    return row


@dataclass(frozen=True)
class Condition:
    """One --where term; `text` is the unparsed value, used when the cell is a string (run "0")."""

    key: str
    op: str
    text: str
    value: Any


def parse_where(expr: str) -> Condition:
    match = _WHERE.match(expr)
    if not match:
        raise UserError(f"--where {expr!r}: {_WHERE_HELP}")
    key, op, text = match.groups()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        text = text[1:-1]
    value: Any = {"null": None, "none": None, "true": True, "false": False}.get(text.lower(), text)
    with contextlib.suppress(ValueError):
        value = float(text)
    return Condition(key, op, text, value)


def matches(row: dict[str, Any], cond: Condition) -> bool:
    """SQL-like: a missing cell matches nothing except `KEY==null`."""
    cell = row.get(cond.key)
    if cond.value is None:
        return (cond.op == "==" and cell is None) or (cond.op == "!=" and cell is not None)
    if cell is None:
        return False
    if isinstance(cell, bool) or isinstance(cond.value, bool):
        return cell is cond.value if cond.op == "==" else cond.op == "!=" and cell is not cond.value
    if is_number(cell) and is_number(cond.value):
        return OPS[cond.op](cell, cond.value)
    if isinstance(cell, str):
        return OPS[cond.op](cell, cond.text)
    return cond.op == "!="


def sort_rows(rows: list[dict[str, Any]], spec: str, known: list[str]) -> list[dict[str, Any]]:
    """`KEY` ascending, `-KEY` descending; runs without the value go last either way."""
    key = spec[1:] if spec[:1] in "+-" else spec
    if key not in known and not any(key in row for row in rows):
        raise UserError(f"--sort {spec!r}: unknown key; known columns: {', '.join(known)} "
                        "(or a dotted config key)")
    present = [row for row in rows if row.get(key) is not None]
    # Numbers before text, so a column mixing both still sorts instead of raising TypeError.
    present.sort(key=lambda row: (0, row[key], "") if is_number(row[key]) else (1, 0, str(row[key])),
                 reverse=spec.startswith("-"))
    return present + [row for row in rows if row.get(key) is None]


def check_where(where: Sequence[str], rows: list[dict[str, Any]]) -> list[Condition]:
    """The parsed --where terms; a key that is no column and no config key of `rows` is an error."""
    conditions = [parse_where(expr) for expr in where]
    known = set(FIXED + HEADLINE + BASE_COLUMNS).union(*rows)
    for cond, expr in zip(conditions, where):
        if cond.key not in known:
            raise UserError(f"--where {expr!r}: unknown key {cond.key!r}; use a column "
                            f"({', '.join(FIXED + HEADLINE)}) or a dotted config key (e.g. strategy.sparsity)")
    return conditions


def compare_table(records: list[RunRecord], labels: list[str], *, where: Sequence[str] = (),
                  sort: str | None = None, baseline: RunRecord | None = None,
                  all_params: bool = False) -> Table:
    """Filter, pick columns from the runs left, then sort; errors name what is allowed."""
    base = headline(baseline) if baseline is not None else None
    pairs = [(rec, build_row(rec, label, base)) for rec, label in zip(records, labels)]
    conditions = check_where(where, [row for _, row in pairs])
    pairs = [(rec, row) for rec, row in pairs if all(matches(row, cond) for cond in conditions)]
    columns = [*FIXED, *config_columns([rec for rec, _ in pairs], all_params), *HEADLINE]
    columns += [ORT_COLUMN] if any(ORT_COLUMN in row for _, row in pairs) else []  # only runs that timed it
    columns += [LATENCY_COLUMN] if any(LATENCY_COLUMN in row for _, row in pairs) else []  # a latency budget's
    columns += list(BASE_COLUMNS) if baseline is not None else []
    columns += ["error"] if any("error" in row for _, row in pairs) else []
    rows = [row for _, row in pairs]
    rows = sort_rows(rows, sort, columns) if sort else rows
    return Table.from_records(columns, rows)


def diff_table(a: RunRecord, b: RunRecord, label_a: str, label_b: str) -> Table:
    """Two runs side by side: status, differing config, all headline figures, differing result figures."""
    rows: list[dict[str, Any]] = [{"section": "run", "key": "status", label_a: a.status, label_b: b.status}]

    def add(section: str, key: str, va: Any, vb: Any) -> None:
        rows.append({"section": section, "key": key, label_a: va, label_b: vb, "delta": _sub(vb, va)})

    for key in dict.fromkeys([*a.config, *b.config]):
        if comparable_text(a.config.get(key)) != comparable_text(b.config.get(key)):  # missing and null: both unset
            add("config", key, a.config.get(key), b.config.get(key))
    ha, hb = headline(a), headline(b)
    for key in HEADLINE:
        add("headline", key, ha.get(key), hb.get(key))
    for key in dict.fromkeys([*a.results, *b.results]):
        if key not in _DIFF_SKIP and a.results.get(key) != b.results.get(key):
            add("results", key, a.results.get(key), b.results.get(key))
    columns = ["section", "key", label_a, label_b, "delta"]
    return Table.from_records(columns, rows, key_column="key", signed_column="delta")
