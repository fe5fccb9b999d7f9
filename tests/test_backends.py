"""evaluate.backends: onnxruntime figures in results.json, the Speed table and compare; the one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from conftest import PROGPRUNE, progprune, refused
from run_fixture import make_run
from progprune_cli.errors import UserError
from progprune_cli.measure import onnx_export, onnxruntime_backend
from progprune_cli.report import tables
from progprune_cli.report.compare_cli import main as compare_main
from progprune_cli.results.schema import Results

MASK = tables.MASK_ONLY_NOTE
TINY_RUN = ["dataset=synthetic", "train.epochs=1", "prune.epochs=1", "finetune.epochs=1", "evaluate.repeats=2",
            "evaluate.warmup=1", "evaluate.dense_baseline=false"]
SETUP = ("onnxruntime: each model exported to ONNX (checkpoints/onnx/, checked against PyTorch) and run by a CPU "
         "session with 1 intra-op thread(s), 1 inter-op, sequential, timed in turns with the torch models with the "
         "same warm-up and repeats; onnxruntime speedup = the original's onnxruntime median / this median")


def ort_latency(median: float, speedup: float | None) -> dict:
    return {"device": "cpu", "threads": 1, "warmup": 3, "repeats": 10, "eval_batch_size": 256, "eval_samples": 270,
            "latency_batch": 1, "timing": "interleaved",
            "eval_runtime_s": {"median": median, "p10": median * 0.9, "p90": median * 1.1},
            "batch1_ms": {"median": 0.1, "p10": 0.09, "p90": 0.11}, "throughput_sps": 270 / median,
            "measured_speedup": speedup}


def with_backends(run: Path, figures: dict[str, tuple[float, float]], notes: list[str] | None = None) -> Path:
    """The fixture run with onnxruntime figures (median s, speedup) for the models named."""
    path = run / "results.json"
    data = json.loads(path.read_text())
    for name, (median, speedup) in figures.items():
        data["models"][name]["backends"] = {"onnxruntime": ort_latency(median, speedup)}
    if notes:
        data["notes"] = notes
    path.write_text(Results.from_json(data, strict=True).dumps())
    return run


def results(run: Path) -> Results:
    return Results.from_json(json.loads((run / "results.json").read_text()))


def test_the_speed_table_gains_onnxruntime_columns(tmp_path: Path) -> None:
    run = with_backends(make_run(tmp_path / "run"), {"original": (0.004, 1.0), "finetuned": (0.002, 2.0),
                                                     "dense_long": (0.004, 1.0)},
                        notes=["evaluate.backends: pruned is not timed in onnxruntime: why"])
    table = tables.speed_table(results(run))
    assert table.headers == ["model", "eval runtime (s)", "batch-1 latency (ms)", "throughput (samples/s)",
                             "measured speedup", "MAC speedup (theoretical)", "onnxruntime runtime (s)",
                             "onnxruntime speedup", "note"]
    assert table.rows[0] == ["original", "0.01 (0.009–0.011)", "0.2 (0.18–0.22)", "27,000", "1.00×", "1.00×",
                             "0.004 (0.0036–0.0044)", "1.00×", ""]
    assert table.rows[1][6:] == ["—", "—", MASK]  # pruned: no onnxruntime figures
    assert table.rows[2][6:] == ["0.002 (0.0018–0.0022)", "2.00×", MASK]
    assert table.footnotes[2:] == [SETUP, "evaluate.backends: pruned is not timed in onnxruntime: why"]


def test_without_backend_figures_the_speed_table_is_as_before(tmp_path: Path) -> None:
    table = tables.speed_table(results(make_run(tmp_path / "run")))
    assert table.headers == ["model", "eval runtime (s)", "batch-1 latency (ms)", "throughput (samples/s)",
                             "measured speedup", "MAC speedup (theoretical)", "note"]
    assert len(table.footnotes) == 2
    assert "backends" not in json.loads((tmp_path / "run" / "results.json").read_text())["models"]["original"]


def test_compare_shows_the_onnxruntime_speedup_only_when_present(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    plain = make_run(tmp_path / "plain")
    assert compare_main([str(plain), "--csv"]) == 0
    assert "ort_speedup" not in capsys.readouterr().out.splitlines()[0]
    timed = with_backends(make_run(tmp_path / "timed"), {"original": (0.004, 1.0), "finetuned": (0.002, 2.5)})
    assert compare_main([str(timed), str(plain), "--csv"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split(",")[-1] == "ort_speedup"
    assert [row.split(",")[-1] for row in rows] == ["2.5", ""]


def test_sessions_run_with_the_evaluate_threads_one_inter_op_thread_and_sequentially(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4)).eval()
    sample = torch.randn(8, 1, 4, 4)
    sessions, notes = onnxruntime_backend.onnxruntime_models({"original": model}, sample, tmp_path / "onnx", 2)
    assert notes == [] and (tmp_path / "onnx" / "original.onnx").is_file()
    wrapped = sessions["original"]
    options = wrapped.session.get_session_options()
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (2, 1)
    assert str(options.execution_mode) == "ExecutionMode.ORT_SEQUENTIAL"
    assert wrapped.session.get_providers() == ["CPUExecutionProvider"]
    with torch.inference_mode():
        assert torch.allclose(wrapped(sample), model(sample), atol=1e-5)


def test_a_model_that_does_not_export_is_left_out_with_a_note(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(model: nn.Module, inputs: torch.Tensor, out: Path) -> None:
        raise UserError("ONNX export of Sequential failed: boom")

    monkeypatch.setattr(onnxruntime_backend, "export_onnx", refuse)
    sessions, notes = onnxruntime_backend.onnxruntime_models({"pruned": nn.Linear(2, 2)}, torch.randn(4, 2),
                                                             tmp_path, 1)
    assert sessions == {}
    assert notes == ["evaluate.backends: pruned is not timed in onnxruntime: ONNX export of Sequential failed: boom"]


@pytest.mark.slow
def test_a_real_run_times_every_model_in_onnxruntime(workdir: Path) -> None:
    result = progprune("train", "evaluate.backends=[torch,onnxruntime]", "+strategy=structured", *TINY_RUN,
                       cwd=workdir)
    assert result.returncode == 0, result.stderr
    (run,) = [p for p in (workdir / "runs").glob("*/*") if (p / "results.json").is_file()]
    data = json.loads((run / "results.json").read_text())
    models = data["models"]
    assert list(models) == ["original", "pruned", "finetuned", "compacted"]
    for name, model in models.items():
        (ort,) = model["backends"].values()
        assert list(model["backends"]) == ["onnxruntime"]
        assert ort.keys() == model["latency"].keys()
        assert (ort["device"], ort["threads"], ort["warmup"], ort["repeats"], ort["timing"]) == (
            "cpu", 1, 1, 2, "interleaved")
        assert 0 < ort["eval_runtime_s"]["p10"] <= ort["eval_runtime_s"]["median"] <= ort["eval_runtime_s"]["p90"]
        assert (run / "checkpoints" / "onnx" / f"{name}.onnx").is_file()
    assert models["original"]["backends"]["onnxruntime"]["measured_speedup"] == 1.0
    compacted = models["compacted"]["backends"]["onnxruntime"]
    original = models["original"]["backends"]["onnxruntime"]
    assert compacted["measured_speedup"] == pytest.approx(
        original["eval_runtime_s"]["median"] / compacted["eval_runtime_s"]["median"])
    assert "notes" not in data
    speed = (run / "results.md").read_text().split("## Speed", 1)[1].split("\n## ", 1)[0]
    assert "| onnxruntime runtime (s) | onnxruntime speedup |" in speed and f"- {SETUP}" in speed
    compare = subprocess.run([PROGPRUNE, "compare", str(run), "--csv"], capture_output=True, text=True, cwd=workdir)
    header, row = compare.stdout.splitlines()
    assert header.split(",")[-1] == "ort_speedup"
    assert float(row.split(",")[-1]) == pytest.approx(compacted["measured_speedup"])


def test_onnxruntime_missing_is_one_line_before_any_folder(workdir: Path) -> None:
    # `import onnxruntime` fails as if it were not installed, then the CLI runs as the `progprune` command does.
    code = ("import sys; sys.modules['onnxruntime'] = None; sys.argv = ['progprune'] + sys.argv[1:]; "
            "from progprune_cli.cli import main; main()")
    result = subprocess.run([sys.executable, "-c", code, "train", "evaluate.backends=[torch,onnxruntime]",
                             "+strategy=weight", "dataset=synthetic"], capture_output=True, text=True, cwd=workdir)
    assert (result.returncode, result.stderr) == (2, (
        "progprune: error: evaluate.backends: onnxruntime needs onnxruntime, which is not installed: "
        f"{onnx_export.INSTALL}\n"))
    assert "pip install 'progprune[export]'" in result.stderr
    assert not (workdir / "runs").exists()


@pytest.mark.parametrize(("value", "message"), [
    ("[torch,tensorrt]", "evaluate.backends[1]: got 'tensorrt'; allowed values are torch, onnxruntime"),
    ("[onnxruntime]", "evaluate.backends: got [onnxruntime]; it must include torch (e.g. [torch, onnxruntime])"),
])
def test_a_bad_backend_is_one_line_listing_the_allowed_ones(workdir: Path, value: str, message: str,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    err = refused("train", f"evaluate.backends={value}", cwd=workdir, monkeypatch=monkeypatch, capsys=capsys)
    assert err == f"progprune: error: {message}\n"
    assert not (workdir / "runs").exists()
