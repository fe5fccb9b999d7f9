"""`progprune compare`: many run folders in one table (rich, --md, --csv, --json, --latex), --diff two, --summary a
sweep, --pivot a paper table."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import NoReturn

from progprune_cli.errors import UserError
from progprune_cli.reading import clean_text
from progprune_cli.report.compare import compare_table, diff_table, headline
from progprune_cli.report.pivot import DEFAULT_METRIC, METRICS, pivot_tables
from progprune_cli.report.render import FORMATS, Table
from progprune_cli.report.runs import RunRecord, find_runs, is_run_dir, is_sweep_dir, read_run, run_labels

PROG = "progprune compare"
_EPILOG = ("Figures are those of the final model (finetuned, else original): test_acc_vs_orig = its test accuracy "
           "minus the dense original's; theoretical_speedup = dense / effective MACs (theoretical); physical, "
           "measured_speedup and runtime_median_s (eval runtime median, measured) come from the compacted or "
           "sparse_kernels model when the run has one. Runs without results show their status and error. A terminal "
           "too narrow for one row per run gets one column per run instead (in parts when needed); piped output, "
           "--md, --csv and --json always keep one row per run.")


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
    fmt = parser.add_mutually_exclusive_group()  # each flag names its renderer in render.FORMATS
    fmt.add_argument("--md", dest="format", action="store_const", const="md", help="GitHub markdown table")
    fmt.add_argument("--csv", dest="format", action="store_const", const="csv", help="CSV with full-precision values")
    fmt.add_argument("--json", dest="format", action="store_const", const="json", help="a JSON list of row objects")
    fmt.add_argument("--latex", dest="format", action="store_const", const="latex",
                     help="a booktabs LaTeX tabular (\\usepackage{booktabs})")
    parser.add_argument("--pivot", metavar="ROWS,COLUMNS",
                        help="a paper table: rows and columns are config keys (strategy = strategy.name, target = "
                             "strategy.target.macs/params/latency_ms, else strategy.sparsity); runs differing only "
                             "in seed are one cell, mean ± std (n); markdown by default, --csv/--json a cell per row")
    parser.add_argument("--metric", metavar="NAME", help=f"--pivot's figure (default {DEFAULT_METRIC}): one of "
                                                         f"{', '.join(METRICS)}")
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


def _pivot(args: argparse.Namespace, paths: list[Path], records: list[RunRecord]) -> Table:
    """The grid for markdown (the default) and LaTeX; one cell per row for CSV and JSON."""
    if args.diff or args.sort or args.baseline or args.all_params:
        raise UserError("--pivot makes its own rows and columns; it takes no --diff, --sort, --baseline or "
                        "--all-params (--where filters the runs)")
    grid, cells = pivot_tables(records, run_labels(paths), args.pivot, args.metric or DEFAULT_METRIC, args.where)
    args.format = args.format or "md"
    return cells if args.format in ("csv", "json") else grid


def _table(args: argparse.Namespace) -> Table:
    if args.metric is not None and args.pivot is None:
        raise UserError(f"--metric {args.metric!r}: chooses --pivot's figure; add --pivot ROWS,COLUMNS")
    paths = find_runs(args.paths)
    records = [read_run(path) for path in paths]
    if args.pivot is not None:
        return _pivot(args, paths, records)
    if args.diff:
        if args.where or args.sort or args.baseline:
            raise UserError("--diff shows two runs as given; it takes no --where, --sort or --baseline")
        if len(records) != 2:
            raise UserError(f"--diff needs exactly two runs, got {len(records)}")
        return diff_table(records[0], records[1], *run_labels(paths))
    baseline = _baseline(args.baseline, paths, records) if args.baseline else None
    return compare_table(records, run_labels(paths), where=args.where, sort=args.sort, baseline=baseline,
                         all_params=args.all_params)


def main(argv: list[str] | None = None) -> int:
    """Entry point for `progprune compare ...`; returns the exit status (2 for bad input)."""
    try:
        args = build_parser().parse_args(_join_sort(sys.argv[1:] if argv is None else list(argv)))
        if args.summary:
            if args.pivot is not None or args.metric is not None:
                raise UserError("--summary writes the sweep's own summary; it takes no --pivot or --metric")
            _summary(args)
            return 0
        table = _table(args)
    except UserError as exc:
        print(f"{PROG}: error: {clean_text(str(exc))}", file=sys.stderr)  # it may name a path a glob found
        return 2
    if args.format:
        sys.stdout.write(FORMATS.get(args.format)(table))
    else:
        from progprune_cli.report.terminal import print_fitted  # rich only for the terminal: --json stays fast

        print_fitted(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
