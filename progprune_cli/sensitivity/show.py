"""`progprune report SENS_DIR`: the sensitivity table and the derived budget, from the folder's files (no torch)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from progprune_cli import reading
from progprune_cli.errors import UserError
from progprune_cli.report.render import Table, markdown_text, to_markdown
from progprune_cli.report.terminal import reader_console, rich_table
from progprune_cli.sensitivity.table import read_table


def is_sensitivity_folder(run_dir: Path) -> bool:
    return os.path.lexists(run_dir / "sensitivity.csv")  # a symlink too: read, and refused in one line


_CAPTION = "val accuracy with one unit pruned alone (no retraining), most sensitive first; budget: layers.yaml"


def print_sensitivity(run_dir: Path, console: Console | None = None, md: bool = False) -> int:
    """How layers.yaml was derived (its comment), then one row per unit, most sensitive first: val accuracy at
    every level and the unit's budget; `md`: the same as markdown on stdout. Exit code 0."""
    rows = read_table(run_dir / "sensitivity.csv")
    header, budget = _layers(run_dir / "layers.yaml")
    title = f"progprune sensitivity {reading.clean_text(run_dir.name)}"
    if md:
        lines = [f"# {markdown_text(title)}", "", *(f"{markdown_text(line)}  " for line in header), "", _CAPTION, ""]
        sys.stdout.write("\n".join(lines) + "\n" + to_markdown(_table(rows, budget)))
        return 0
    if console is None:
        console = reader_console()
    console.print(Text(title, style="bold"))
    for line in header:
        console.print(Text(line))
    console.print(Text(_CAPTION))
    console.print(rich_table(_table(rows, budget)))
    return 0


def _table(rows: list[dict[str, Any]], budget: dict[str, float]) -> Table:
    units = list(dict.fromkeys(r["unit"] for r in rows))
    levels = sorted({r["level"] for r in rows})
    accuracy = {(r["unit"], r["level"]): r["val_accuracy"] for r in rows}
    mean = {u: sum(accuracy.get((u, v), 0.0) for v in levels) / len(levels) for u in units}
    out = []
    for unit in sorted(units, key=lambda u: (mean[u], units.index(u))):
        cells = [f"{accuracy[(unit, v)]:.2%}" if (unit, v) in accuracy else "" for v in levels]
        share = budget.get(unit)
        out.append([unit, *cells, "" if share is None else f"{share:.2%}"])
    return Table(["unit", *(f"{level:g}" for level in levels), "budget"], out)


def _layers(path: Path) -> tuple[list[str], dict[str, float]]:
    """layers.yaml's comment lines and its mapping (progprune_cli.reading: safe YAML, no symlink); nothing when it
    is not written yet."""
    try:
        text = reading.read_text(path, reading.YAML_LIMIT)
        budget = reading.read_yaml(path) or {}
    except FileNotFoundError:
        return [f"{path.name}: not written yet (the analysis has not finished)"], {}
    except reading.Unreadable as error:
        raise UserError(str(error)) from None
    if not isinstance(budget, dict):
        raise UserError(f"{path}: expected a mapping of unit: sparsity, found {type(budget).__name__}")
    header = [line[1:].strip() for line in text.splitlines() if line.startswith("#")]
    return [line for line in header if line], {str(k): v for k, v in budget.items() if isinstance(v, (int, float))}
