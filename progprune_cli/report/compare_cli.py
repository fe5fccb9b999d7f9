"""`progprune compare`: many run folders in one table (rich, --md, --csv, --json), --diff two, --summary a sweep."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from progprune_cli.errors import UserError
from progprune_cli.reading import clean_text
from progprune_cli.report.compare import Table, compare_table, diff_table, headline, to_csv, to_markdown
from progprune_cli.report.runs import RunRecord, find_runs, is_run_dir, is_sweep_dir, read_run, run_labels

if TYPE_CHECKING:
    from rich.console import Console

PROG = "progprune compare"
_EPILOG = ("Figures are those of the final model (finetuned, else original): test_acc_vs_orig = its test accuracy "
           "minus the dense original's; theoretical_speedup = dense / effective MACs (theoretical); physical, "
           "measured_speedup and runtime_median_s (eval runtime median, measured) come from the compacted or "
           "sparse_kernels model when the run has one. Runs without results show their status and error. A terminal "
           "too narrow for one row per run gets one column per run instead (in parts when needed); piped output, "
           "--md, --csv and --json always keep one row per run.")
_STATUS_STYLE = {"complete": "green", "running": "yellow", "failed": "red", "interrupted": "magenta"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other compare error, instead of argparse's usage block.
        raise UserError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Compare run folders: one row per run, only the config values "
                                            "that differ, the headline figures.", epilog=_EPILOG)
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="run folders, sweep folders (their run sub-folders are compared) or globs")
    parser.add_argument("--sort", metavar="KEY", help="sort by a column or dotted config key; -KEY descending")
    parser.add_argument("--where", action="append", default=[], metavar="EXPR",
                        help="keep runs where KEY OP VALUE holds (OP: > >= < <= == !=); repeat to AND")
    parser.add_argument("--baseline", metavar="RUN",
                        help="add *_vs_base columns against this run (a run folder or a row's run label)")
    parser.add_argument("--all-params", action="store_true", help="show every config value, not only changed")
    fmt = parser.add_mutually_exclusive_group()
    fmt.add_argument("--md", action="store_true", help="GitHub markdown table")
    fmt.add_argument("--csv", action="store_true", help="CSV with full-precision values")
    fmt.add_argument("--json", action="store_true", help="a JSON list of row objects")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--diff", action="store_true", help="two runs side by side: config and result differences")
    mode.add_argument("--summary", action="store_true",
                      help="write summary.md, summary.csv and pareto.png into each sweep folder")
    return parser


def _join_sort(argv: list[str]) -> list[str]:
    # `--sort -val_acc` would read as an unknown option; treat the next word as the key.
    out: list[str] = []
    for arg in argv:
        if out and out[-1] == "--sort" and arg.startswith("-") and not arg.startswith("--") and len(arg) > 1:
            out[-1] = f"--sort={arg}"
        else:
            out.append(arg)
    return out


def _baseline(arg: str, paths: list[Path], records: list[RunRecord]) -> RunRecord:
    """A run folder (added as a row when not already one) or the run label of a row; it needs results."""
    if is_run_dir(Path(arg)):
        resolved = [p.resolve() for p in paths]
        if Path(arg).resolve() in resolved:
            record = records[resolved.index(Path(arg).resolve())]
        else:
            record = read_run(Path(arg))
            paths.insert(0, Path(arg))
            records.insert(0, record)
    elif arg in run_labels(paths):
        record = records[run_labels(paths).index(arg)]
    else:
        raise UserError(f"--baseline {arg}: not a run folder or the run label of a row")
    if not headline(record):
        raise UserError(f"--baseline {arg}: no results to compare against (status {record.status})")
    return record


def _summary(args: argparse.Namespace) -> None:
    # matplotlib is imported only here: plain `compare` must stay fast.
    from progprune_cli.report.summary import write_sweep_summary

    for arg in args.paths:
        if not is_sweep_dir(Path(arg)):
            raise UserError(f"{arg}: not a sweep folder (--summary needs a folder of run folders)")
    for arg in args.paths:
        summary = write_sweep_summary(Path(arg))
        sys.stdout.write(summary.read_text(encoding="utf-8"))
        print(f"wrote {summary}, {summary.with_name('summary.csv')}, {summary.with_name('pareto.png')}")


def _table(args: argparse.Namespace) -> Table:
    paths = find_runs(args.paths)
    records = [read_run(path) for path in paths]
    if args.diff:
        if args.where or args.sort or args.baseline:
            raise UserError("--diff shows two runs as given; it takes no --where, --sort or --baseline")
        if len(records) != 2:
            raise UserError(f"--diff needs exactly two runs, got {len(records)}")
        return diff_table(records[0], records[1], *run_labels(paths))
    baseline = _baseline(args.baseline, paths, records) if args.baseline else None
    return compare_table(records, run_labels(paths), where=args.where, sort=args.sort, baseline=baseline,
                         all_params=args.all_params)


def to_json(table: Table) -> str:
    return json.dumps([{c: row.get(c) for c in table.columns} for row in table.rows], indent=1) + "\n"


def print_rich(table: Table, console: Console | None = None) -> None:
    """A terminal gets the table as it is when it fits, else transposed (one column per run, in as many parts as
    it needs) so that no cell is cut to `…`; piped output gets it whole at full width, never folded."""
    from rich.console import Console
    from rich.table import Table as RichTable
    from rich.text import Text

    from progprune_cli.report.fit import fit, width_of

    console = console or Console()
    grids = fit(table, console.width if console.is_terminal else None)
    if not console.is_terminal:
        assert grids[0].widths is not None
        # Fixed widths also spare rich measuring every cell again (a sweep may hold hundreds of runs).
        console = Console(file=console.file, width=width_of(grids[0].widths))
    if grids[0].transposed:
        console.print(Text(f"one column per run: the {len(table.columns)} columns do not fit in {console.width}",
                           style="dim"))
    for grid in grids:
        view = RichTable(header_style="bold", title=grid.title, title_justify="left")
        for i, header in enumerate(grid.headers):
            right = bool(grid.rows) and all(flags[i] for flags in grid.right)  # a numeric column: header too
            # fold, not ellipsis: a cell too long for its column wraps onto more lines instead of becoming `…`.
            view.add_column(Text(header), justify="right" if right else "left", overflow="fold",
                            width=grid.widths[i] if grid.widths else None,
                            min_width=grid.min_widths[i] if grid.min_widths else None)
        for r, texts in enumerate(grid.rows):
            # Text, not str: config values like [0.1,0.2] must not be read as rich markup.
            view.add_row(*(Text(t, justify="right" if grid.right[r][c] else "left",
                                style=_STATUS_STYLE.get(t, "") if r == grid.status_row or c == grid.status_column
                                else "")
                           for c, t in enumerate(texts)))
        console.print(view)


def main(argv: list[str] | None = None) -> int:
    """Entry point for `progprune compare ...`; returns the exit status (2 for bad input)."""
    try:
        args = build_parser().parse_args(_join_sort(sys.argv[1:] if argv is None else list(argv)))
        if args.summary:
            _summary(args)
            return 0
        table = _table(args)
    except UserError as exc:
        print(f"{PROG}: error: {clean_text(str(exc))}", file=sys.stderr)  # it may name a path a glob found
        return 2
    if args.md or args.csv or args.json:
        sys.stdout.write((to_markdown if args.md else to_csv if args.csv else to_json)(table))
    else:
        print_rich(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
