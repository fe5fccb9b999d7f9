"""train.precision, train.channels_last (the Loop's options, on the CPU): masks stay exactly zero under bf16
autocast, fp16 is refused off CUDA in one line, channels_last trains what contiguous tensors train, and a bf16
Loop restored from its state_dict goes on exactly as an uninterrupted one. Also the latency record's CUDA-only
peak_memory_bytes: null off CUDA, a Speed-table column only when a run has it."""

from __future__ import annotations

import io
import json
import math
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from rich.console import Console
from torch import nn
from torch.utils.data import TensorDataset

from conftest import component, composed, progprune
from run_fixture import make_run
from progprune_cli.config import load_run_config
from progprune_cli.errors import UserError
from progprune_cli.measure.latency import latency_report, peak_memory
from progprune_cli.optim.losses import cross_entropy
from progprune_cli.report.tables import speed_table
from progprune_cli.results.schema import Latency, Results
from progprune_cli.stages.io import StageIO
from progprune_cli.stages.loop import Loop

CPU = torch.device("cpu")
FP16_ON_CPU = ("train.precision: fp16 needs a CUDA device (autocast on the CPU supports bf16); use "
               "train.precision=bf16 or fp32, or device=cuda")
SGD = component("optimizer", "sgd", lr=0.05, momentum=0.9)


def images(n: int = 24) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(torch.randn(n, 2, 6, 6, generator=g), torch.arange(n) % 3)


def conv_net(dropout: float = 0.0) -> nn.Sequential:
    """Conv2d(2 -> 4, 3x3) → ReLU → Flatten → Dropout → Linear(64 -> 3), seeded."""
    torch.manual_seed(0)
    return nn.Sequential(OrderedDict(conv=nn.Conv2d(2, 4, 3), relu=nn.ReLU(), flat=nn.Flatten(),
                                     drop=nn.Dropout(dropout), fc=nn.Linear(64, 3)))


def masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every other weight of conv and fc pruned (a fixed pattern, so two runs prune alike)."""
    return {name: (torch.arange(p.numel()) % 2 == 0).view_as(p) for name, p in model.named_parameters()
            if name.endswith("weight")}


def make_loop(tmp_path: Path, model: nn.Module, **options: object) -> Loop:
    stage_io = StageIO(tmp_path, Console(file=io.StringIO()))
    return Loop(model, images(), images(6), SGD, cross_entropy, CPU, batch_size=8, io=stage_io, stage="finetune",
                seed=0, epochs=3, **options)  # type: ignore[arg-type]


def test_bf16_autocast_keeps_pruned_weights_exactly_zero_and_the_loss_finite(tmp_path: Path) -> None:
    model = conv_net()
    loop = make_loop(tmp_path, model, precision="bf16")
    pattern = masks(model)
    loop.set_masks(pattern)
    seen: list[torch.dtype] = []
    model.fc.register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    at_start = {k: p.detach().clone() for k, p in model.named_parameters()}
    rows = loop.run(3)
    assert set(seen) == {torch.bfloat16, torch.float32}  # bf16 in training steps; evaluation runs in fp32
    for name, keep in pattern.items():
        param = dict(model.named_parameters())[name]
        assert param.dtype == torch.float32  # autocast computes in bf16; the weights stay fp32
        assert param[~keep].tolist() == [0.0] * int((~keep).sum())
        assert param.grad[~keep].tolist() == [0.0] * int((~keep).sum())
        assert bool((param[keep] != at_start[name][keep]).all())  # live weights still train
    assert len(rows) == 3 and all(math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]) for r in rows)


def test_fp16_is_refused_on_the_cpu_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError) as error:
        make_loop(tmp_path, conv_net(), precision="fp16")
    assert str(error.value) == FP16_ON_CPU
    with pytest.raises(UserError) as error:
        load_run_config(composed("device=cpu", "train.precision=fp16"))
    assert str(error.value) == FP16_ON_CPU
    with pytest.raises(UserError) as error:
        load_run_config(composed("device=cpu", "train.precision=fp8"))
    assert str(error.value) == "train.precision: got 'fp8'; allowed values are fp32, bf16, fp16"


def test_fp16_on_the_cpu_fails_before_any_folder_exists(tmp_path: Path) -> None:
    done = progprune("train", "dataset=synthetic", "device=cpu", "train.precision=fp16", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (2, f"progprune: error: {FP16_ON_CPU}\n")
    assert list(tmp_path.iterdir()) == []


def test_channels_last_trains_what_contiguous_tensors_train(tmp_path: Path) -> None:
    plain, last = conv_net(), conv_net()
    formats: list[bool] = []
    last.conv.register_forward_pre_hook(lambda module, args: formats.append(
        args[0].is_contiguous(memory_format=torch.channels_last)) if module.training else None)
    rows_plain = make_loop(tmp_path / "plain", plain).run(3)
    rows_last = make_loop(tmp_path / "last", last, channels_last=True).run(3)
    assert last.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not plain.conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert formats == [True] * 9  # every training batch (3 epochs x 3 steps) went in as channels_last
    for (name, a), b in zip(plain.state_dict().items(), last.state_dict().values()):
        # Another convolution kernel sums in another order: equal up to float32 rounding, not bit for bit.
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6, msg=name)
    for a, b in zip(rows_plain, rows_last):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-5)
        assert b["val_acc"] == a["val_acc"]


@pytest.mark.parametrize("snapshot", [0, 1], ids=["mid_epoch", "epoch_end"])
def test_a_bf16_loop_resumed_from_its_state_dict_equals_an_uninterrupted_one(tmp_path: Path, snapshot: int) -> None:
    """Killed after epoch 1's step 2 of 3 (a checkpoint every 2 steps) or at the end of epoch 1, then resumed in a
    new Loop around a new model, through torch.save/torch.load(weights_only) as a checkpoint file goes."""
    reference = conv_net(dropout=0.2)  # dropout: the resumed run must also draw the same random numbers
    ref_loop = make_loop(tmp_path / "ref", reference, precision="bf16")
    ref_loop.set_masks(masks(reference))
    ref_rows = ref_loop.run(3)

    first = conv_net(dropout=0.2)
    saved: list[bytes] = []

    def save() -> None:
        buffer = io.BytesIO()
        torch.save({"loop": loop.state_dict()}, buffer)
        saved.append(buffer.getvalue())

    loop = make_loop(tmp_path / "first", first, precision="bf16", every_steps=2, save=save)
    loop.set_masks(masks(first))
    loop.run(1)  # the kill: nothing of this Loop is used after here but what it saved
    state = torch.load(io.BytesIO(saved[snapshot]), weights_only=True)["loop"]
    assert (state["epoch"], state["step_in_epoch"]) == [(0, 2), (1, 0)][snapshot]
    assert state["scaler"] is None  # bf16 needs no loss scaling (fp16's GradScaler state would be here)

    torch.manual_seed(123)  # whatever the new process drew before: the state restores the RNG
    resumed_model = conv_net(dropout=0.2)
    with torch.no_grad():
        for param in resumed_model.parameters():
            param.normal_()  # other weights than the run's: the state must bring every value back
    resumed = make_loop(tmp_path / "resumed", resumed_model, precision="bf16")
    resumed.load_state_dict(state)
    rows = resumed.run(3)
    assert rows == ref_rows
    for (name, a), b in zip(reference.state_dict().items(), resumed_model.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs after resume"


def test_peak_memory_is_null_off_cuda_and_a_speed_column_only_when_a_run_has_it(tmp_path: Path) -> None:
    model = conv_net()
    assert peak_memory({"m": model}, torch.randn(8, 2, 6, 6), 4, CPU) == {"m": None}
    report = latency_report(model, torch.randn(8, 2, 6, 6), eval_batch_size=4, latency_batch=1, warmup=0,
                            repeats=1, threads=1, device=CPU)
    assert "peak_memory_bytes" not in report  # the CPU record keeps its keys; the schema reads the absence as null
    assert Latency.from_json(report, strict=True).peak_memory_bytes is None
    results = Results.from_json(json.loads((make_run(tmp_path / "run") / "results.json").read_text()))
    assert json.loads(results.dumps())["models"]["original"]["latency"]["peak_memory_bytes"] is None
    assert "peak GPU memory (MB)" not in speed_table(results).headers
    on_gpu = replace(results, models={name: replace(m, latency=replace(m.latency, peak_memory_bytes=12_345_678 * i))
                                      for i, (name, m) in enumerate(results.models.items(), 1)})
    table = speed_table(on_gpu)
    assert table.headers[3:6] == ["throughput (samples/s)", "peak GPU memory (MB)", "measured speedup"]
    assert [row[4] for row in table.rows] == ["12.3", "24.7", "37.0", "49.4"]
