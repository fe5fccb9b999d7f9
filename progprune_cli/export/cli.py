"""`progprune export RUN_DIR [--model M] [--format onnx|hf] [--out PATH]`: a run's model as a checked ONNX file, or
a model=hf run's as a Hugging Face folder."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NoReturn

from progprune_cli.errors import UserError
from progprune_cli.export.run import RunFolder, check_out_writable
from progprune_cli.results.schema import SAVED_MODELS

PROG = "progprune export"
FORMATS = ("onnx", "hf")
CHECK_SAMPLES = 256  # test inputs compared with PyTorch (all of them when the split is smaller)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line like every other progprune error, not argparse's usage block.
        raise UserError(message)


def parser() -> argparse.ArgumentParser:
    p = _Parser(prog=PROG, description="Write a finished run's model as ONNX (plus a JSON sidecar), checked "
                                       "against PyTorch with onnxruntime on the run's test split; or a model=hf "
                                       "run's as a Hugging Face folder (--format hf), checked by reloading it.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a complete run folder")
    p.add_argument("--model", metavar="MODEL", default=None,
                   help=f"one of {', '.join(SAVED_MODELS)}; default: what the run produced (compacted where channels "
                        "were removed, else finetuned; original for a dense run)")
    p.add_argument("--format", metavar="FORMAT", default="onnx",
                   help="onnx (default), or hf: a Hugging Face folder (config.json, model.safetensors, "
                        "progprune.json) of a model=hf run")
    p.add_argument("--out", metavar="PATH", default=None,
                   help="output file (or folder); default RUN_DIR/export/MODEL.onnx; the sidecar goes beside it "
                        "as .json; --format hf: a new folder, default RUN_DIR/export/MODEL-hf")
    p.add_argument("--trust-targets", action="store_true",
                   help="build a model of the user's own class (model._target_ in the run's config), importing its "
                        "module from the current folder or PYTHONPATH; without it such a run is refused")
    p.add_argument("--check-samples", metavar="N", type=int, default=CHECK_SAMPLES,
                   help=f"test inputs to compare (default {CHECK_SAMPLES})")
    return p


def run_export(args: argparse.Namespace) -> list[str]:
    """Export as asked; the lines to print. Every problem is a UserError naming what is wrong."""
    if args.format not in FORMATS:
        raise UserError(f"--format: got {args.format!r}; choose one of {', '.join(FORMATS)}")
    if args.model is not None and args.model not in SAVED_MODELS:
        raise UserError(f"--model: got {args.model!r}; choose one of {', '.join(SAVED_MODELS)}")
    if args.check_samples < 1:
        raise UserError(f"--check-samples: got {args.check_samples}; must be >= 1")
    run = RunFolder.open(args.run_dir)
    if args.format == "hf":
        from progprune_cli.export.hf import require_hf_run

        require_hf_run(run)
        from progprune_cli.models.hf import transformers_module

        transformers_module()  # before any model loading: a missing package should cost nothing
    else:
        from progprune_cli.measure import onnx_export

        onnx_export.require()
    run.require_complete()
    run.require_trusted(args.trust_targets)
    which = args.model or run.default_model()
    if args.model is not None:
        try:
            run.checkpoint(which)
        except UserError as error:
            raise UserError(f"--model {which}: {error}") from None
    if args.format == "hf":
        return _export_hf(args, run, which)
    out = _out_path(args.out, run, which)

    from progprune_cli.data import build_data, inputs
    from progprune_cli.export.saved import load_model
    from progprune_cli.export.sidecar import describe, sidecar_path
    from progprune_cli.atomic import write_atomic

    data = build_data(run.cfg.dataset, run.cfg.seed)  # as parts.py builds it: the same seeded test split
    model = load_model(run.path, which, info=data.info, trust_targets=args.trust_targets)
    try:
        exported, checked = onnx_export.export_onnx(model, inputs(data.test, args.check_samples), out)
        side = sidecar_path(out)
        write_atomic(side, json.dumps(describe(run, which, data, out, exported, checked), indent=1) + "\n")
    except OSError as error:  # e.g. a folder that is not a real one (/proc), a full disk
        raise UserError(f"--out: cannot write {error.filename or out} ({error.strerror or error})") from None
    from progprune_cli.models.weights import source_of

    source = source_of(run.cfg.model).removeprefix("progprune:")
    return [f"wrote {out} ({which} {source}, ONNX opset {exported.opset}, {exported.exporter} exporter)",
            f"checked with onnxruntime on {checked.samples} test inputs: max |diff| {checked.max_abs_diff:.2g} "
            f"(<= {checked.tolerance:g})",
            f"sidecar: {side}"]


def _export_hf(args: argparse.Namespace, run: RunFolder, which: str) -> list[str]:
    """--format hf: the run's model as a Hugging Face folder, reloaded and compared before it is in place."""
    from progprune_cli.data import build_data, inputs
    from progprune_cli.export.hf import SIDECAR, TOLERANCE, export_hf, fit_mlp_width, hf_model, out_folder
    from progprune_cli.export.saved import load_model

    if args.out is not None:
        out_folder(args.out, run, which)  # a given --out is refused before any model is read
    data = build_data(run.cfg.dataset, run.cfg.seed)
    model = load_model(run.path, which, info=data.info, trust_targets=args.trust_targets)
    changed: dict[str, int] | None = {}
    if which == "compacted":
        inner = getattr(model, "model", None)  # the transformers model inside progprune's wrapper, if it is one
        changed = fit_mlp_width(inner) if hasattr(inner, "save_pretrained") else None
    chosen = hf_model(run, which, chosen=args.model is not None, described=changed is not None)
    if chosen != which:
        which, changed = chosen, {}
        model = load_model(run.path, which, info=data.info, trust_targets=args.trust_targets)
    out = out_folder(args.out, run, which)
    ids = inputs(data.test, args.check_samples)
    diff = export_hf(run, which, model, data.info, ids, out, changed or {})
    described = "".join(f", config.json's {key} set to {value}" for key, value in (changed or {}).items())
    return [f"wrote {out} ({which} {run.cfg.model.name}, Hugging Face folder: config.json, model.safetensors, "
            f"{SIDECAR}{described})",
            f"checked with AutoModelForCausalLM.from_pretrained on {len(ids)} test windows: max |diff| {diff:.2g} "
            f"(<= {TOLERANCE:g})"]


def _out_path(given: str | None, run: RunFolder, which: str) -> Path:
    """Where the ONNX file goes; a place it cannot go is refused now, before minutes of exporting."""
    if given is None:
        return run.path / "export" / f"{which}.onnx"
    path = Path(given)
    path = path / f"{which}.onnx" if path.is_dir() else path
    check_out_writable(path)
    return path


def main(argv: list[str] | None = None) -> int:
    """Exit 0 written, 2 bad input or a refused export (one line on stderr)."""
    try:
        args = parser().parse_args(argv)
    except SystemExit as exit_:  # --help
        return int(exit_.code or 0)
    except UserError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    try:
        lines = run_export(args)
    except UserError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0
