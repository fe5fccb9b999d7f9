"""Lay a compare table out for a terminal: as it is when it fits, else transposed (one column per run) in parts."""

from __future__ import annotations

from dataclasses import dataclass

from rich.cells import cell_len

from progprune_cli.report.render import Table

# An error message can be a long first line of a traceback; it wraps within this many cells rather than making
# its column (or, transposed, its run's column) as wide as itself.
ERROR_WIDTH = 40
# A --diff too wide for the terminal keeps its keys whole while each value column still gets this many cells.
MIN_VALUE_WIDTH = 12


@dataclass(frozen=True)
class Grid:
    """Display strings ready for rich: `widths` fixed per column (None: rich sizes and folds them), `right` per
    row and column, and `status_row`/`status_column` where the cells are statuses (coloured)."""

    headers: list[str]
    rows: list[list[str]]
    widths: list[int] | None
    right: list[list[bool]]
    status_row: int | None = None
    status_column: int | None = None
    title: str | None = None
    transposed: bool = False
    min_widths: list[int] | None = None


def width_of(widths: list[int]) -> int:
    """Cells plus one space of padding each side and a border between and around them."""
    return sum(widths) + 3 * len(widths) + 1


def as_is(table: Table, cap_errors: bool) -> Grid:
    """One row per run, as the table is; `cap_errors` lets a long error wrap instead of widening the table."""
    columns = range(len(table.headers))
    cells = [[table.text(row, i) for i in columns] for row in table.rows]
    widths = [max([cell_len(c)] + [cell_len(r[i]) for r in cells]) for i, c in enumerate(table.headers)]
    if cap_errors and "error" in table.headers:
        at = table.headers.index("error")
        widths[at] = max(cell_len("error"), min(widths[at], ERROR_WIDTH))
    right = [table.numeric(i) for i in columns]
    status = table.headers.index("status") if "status" in table.headers else None
    return Grid(list(table.headers), cells, widths, [right for _ in cells], status_column=status)


def _split_label(label: str) -> str:
    """A run label over lines at its `/`s (`2026-11-29/` above `20-00-00_weight_0`): narrower, still whole."""
    parts = label.split("/")
    return "\n".join([*(p + "/" for p in parts[:-1]), parts[-1]])


def _lines_width(text: str) -> int:
    return max(cell_len(line) for line in text.split("\n"))


def transposed(table: Table, width: int) -> list[Grid]:
    """Runs as columns and keys as rows, in as many grids as the runs need side by side within `width`; every
    cell keeps its full text (only an error, or a column wider than the terminal on its own, wraps). Run labels
    go over lines at their `/`s when that is what it takes to show every run in one grid."""
    at = [i for i, c in enumerate(table.headers) if c != "run"]  # the keys' columns
    keys = [table.headers[i] for i in at]
    run = table.headers.index("run")
    runs = [str(row[run]) for row in table.rows]
    key_width = max(cell_len(k) for k in ["run", *keys])
    texts = [[table.text(row, i) for i in at] for row in table.rows]
    # Widest cell of each run's column, an error counted only up to ERROR_WIDTH (the rest of it wraps).
    cells = [max([0] + [min(cell_len(t), ERROR_WIDTH) if k == "error" else cell_len(t) for k, t in zip(keys, col)])
             for col in texts]
    labels = runs
    if width_of([key_width, *(max(c, cell_len(r)) for c, r in zip(cells, runs))]) > width:
        labels = [_split_label(r) for r in runs]
    room = max(1, width - width_of([key_width]) - 3)  # the widest run column that fits beside the keys
    parts: list[list[int]] = []  # indices of the runs in each grid
    widths = [min(max(c, _lines_width(label)), room) for c, label in zip(cells, labels)]
    for i, w in enumerate(widths):
        if parts and width_of([key_width, *(widths[j] for j in parts[-1]), w]) <= width:
            parts[-1].append(i)
        else:
            parts.append([i])
    numeric = [table.numeric(i) for i in at]
    status_row = keys.index("status") if "status" in keys else None
    grids = []
    for part in parts:
        title = None
        if len(parts) > 1:
            span = f"{part[0] + 1}" if len(part) == 1 else f"{part[0] + 1}–{part[-1] + 1}"
            title = f"run{'s' if len(part) > 1 else ''} {span} of {len(runs)}"
        rows = [[key, *(texts[j][i] for j in part)] for i, key in enumerate(keys)]
        right = [[False] + [numeric[i]] * len(part) for i in range(len(keys))]
        grids.append(Grid(["run", *(labels[j] for j in part)], rows, [key_width, *(widths[j] for j in part)], right,
                          status_row=status_row, title=title, transposed=True))
    return grids


def fit(table: Table, width: int | None) -> list[Grid]:
    """`width` None (piped output): the table as it is at full width, never folded. In a terminal: as it is when
    it fits, else transposed; a --diff table (already one row per key) that does not fit wraps its cells."""
    if width is None:
        return [as_is(table, cap_errors=False)]
    grid = as_is(table, cap_errors=True)
    assert grid.widths is not None
    if width_of(grid.widths) <= width:
        return [grid]
    if table.key_column is None and "run" in table.headers and table.rows:
        return transposed(table, width)
    # The columns up to the key (--diff's section and key) keep their width while that leaves the values
    # MIN_VALUE_WIDTH each; the values wrap instead. Narrower still, every column wraps.
    keys = table.headers.index(table.key_column) + 1 if table.key_column in table.headers else 0
    values = len(grid.widths) - keys
    kept = width_of(grid.widths[:keys]) + 3 * values + MIN_VALUE_WIDTH * values <= width
    return [Grid(grid.headers, grid.rows, None, grid.right, grid.status_row, grid.status_column,
                 min_widths=[*grid.widths[:keys], *([1] * values)] if kept else None)]
