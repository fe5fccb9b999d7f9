"""progprune_cli.measure: exact counts on toy models with known weights; round trips; documented keys."""

from __future__ import annotations

import copy
import io
import zlib
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn.utils import prune

from progprune_cli.measure import latency
from progprune_cli.measure.latency import relative_spread
from progprune_cli.measure import (
    SparseLinear, count_params, file_size, latency_report, layer_table, load_sparse, macs_summary, max_abs_diff,
    measure_interleaved, measure_latency, save_dense, save_sparse, sparsify_linears,
)

SPREAD_KEYS = {"median", "p10", "p90"}


def toy() -> nn.Sequential:
    """Conv(1->2, 3x3, pad 1, no bias) -> ReLU -> Flatten -> Linear(32 -> 3), on (1, 4, 4) inputs.

    conv weight = arange(18): one zero (17 nonzero). fc weight = arange(96) % 4: 24 zeros (72 nonzero);
    fc bias = [0, 1, 2]: one zero. Totals: 18 + 96 + 3 = 117 params, 17 + 72 + 2 = 91 nonzero.
    """
    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(32, 3))
    with torch.no_grad():
        model[0].weight.copy_(torch.arange(18.0).reshape(2, 1, 3, 3))
        model[3].weight.copy_((torch.arange(96) % 4).float().reshape(3, 32))
        model[3].bias.copy_(torch.tensor([0.0, 1.0, 2.0]))
    return model


def sparse_linear_model(sparsity: float, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    layer = nn.Linear(64, 32)
    with torch.no_grad():
        layer.weight.mul_(torch.rand_like(layer.weight) >= sparsity)
    return layer


# --- params -------------------------------------------------------------------------------------------------

def test_count_params_exact_on_known_weights() -> None:
    assert count_params(toy()) == {"total": 117, "nonzero": 91, "physical": 117,
                                   "sparsity": pytest.approx(26 / 117), "compression": pytest.approx(117 / 91)}


def test_count_params_of_compacted_model_is_relative_to_the_dense_total() -> None:
    dense = nn.Linear(10, 4)  # 44 params
    compacted = nn.Linear(10, 2)  # half the output channels physically removed: 22 params
    nn.init.ones_(compacted.weight)
    nn.init.ones_(compacted.bias)
    counts = count_params(compacted, dense_total=count_params(dense)["total"])
    assert counts == {"total": 44, "nonzero": 22, "physical": 22, "sparsity": 0.5, "compression": 2.0}


def test_count_params_rejects_a_dense_total_below_the_physical_size() -> None:
    with pytest.raises(ValueError, match="dense_total=10 is smaller than the model's own 44 parameters"):
        count_params(nn.Linear(10, 4), dense_total=10)


def test_count_params_sees_torch_prune_masks_and_counts_weight_orig_once() -> None:
    layer = nn.Linear(4, 2)  # 8 weights + 2 bias
    with torch.no_grad():
        layer.weight.copy_(torch.arange(1.0, 9.0).reshape(2, 4))
        layer.bias.fill_(1.0)
    prune.l1_unstructured(layer, "weight", amount=3)  # zeroes the 3 smallest: 1, 2, 3
    counts = count_params(layer)
    assert (counts["total"], counts["nonzero"], counts["physical"]) == (10, 7, 10)


def test_count_params_all_zero_model_has_no_finite_compression() -> None:
    layer = nn.Linear(3, 2, bias=False)
    nn.init.zeros_(layer.weight)
    assert count_params(layer) == {"total": 6, "nonzero": 0, "physical": 6, "sparsity": 1.0, "compression": None}


# --- MACs ---------------------------------------------------------------------------------------------------

def test_layer_table_exact_on_toy() -> None:
    rows = layer_table(toy(), (1, 4, 4))
    assert rows == [
        # 4*4 outputs * 2 channels * 1 in-channel * 3*3 = 288; effective = 16 positions * 17 nonzero weights
        {"name": "0", "type": "Conv2d", "shape": [2, 1, 3, 3], "params": 18, "nonzero": 17,
         "sparsity": pytest.approx(1 / 18), "macs_dense": 288, "macs_effective": 272},
        # 32 * 3 = 96; effective = 72 nonzero weights, each used once
        {"name": "3", "type": "Linear", "shape": [3, 32], "params": 96, "nonzero": 72,
         "sparsity": 0.25, "macs_dense": 96, "macs_effective": 72},
    ]
    assert macs_summary(rows) == {"dense": 384, "effective": 344, "theoretical_speedup": pytest.approx(384 / 344)}


def test_layer_table_grouped_strided_conv_and_linear_over_a_sequence() -> None:
    conv = nn.Conv2d(4, 6, kernel_size=(3, 2), stride=2, groups=2)
    with torch.no_grad():
        conv.weight[:3] = 0  # half the output channels: 36 of 72 weights left
        conv.weight[3:] = 1
    # Input (4, 7, 8): out h = (7-3)//2+1 = 3, out w = (8-2)//2+1 = 4. MACs = 3*4 * 6 * (4/2) * 3*2 = 864.
    [row] = layer_table(nn.Sequential(conv), (4, 7, 8))
    assert (row["shape"], row["params"], row["nonzero"]) == ([6, 2, 3, 2], 72, 36)
    assert (row["macs_dense"], row["macs_effective"]) == (864, 432)
    # Linear(8 -> 4) on (5, 8): 5 positions * 8 * 4 = 160.
    [row] = layer_table(nn.Sequential(nn.Linear(8, 4)), (5, 8))
    assert (row["macs_dense"], row["macs_effective"]) == (160, 160)


def test_layer_table_leaves_model_mode_alone_and_handles_batchnorm() -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 1))
    model.train()
    rows = layer_table(model, (1, 3, 3))  # a 1x1 map: BatchNorm in train mode would reject a batch of one
    assert [r["macs_dense"] for r in rows] == [18, 2]
    assert all(m.training for m in model.modules())


def test_macs_summary_with_nothing_left() -> None:
    assert macs_summary([]) == {"dense": 0, "effective": 0, "theoretical_speedup": None}


# --- sizes --------------------------------------------------------------------------------------------------

def awkward_state() -> OrderedDict[str, torch.Tensor]:
    torch.manual_seed(0)
    dense = torch.randn(6, 5)
    return OrderedDict([
        ("w", dense * (torch.rand(6, 5) > 0.7)),
        ("zeros", torch.zeros(3, 4)),
        ("count", torch.tensor([3, 0, 7], dtype=torch.int64)),
        ("scalar", torch.tensor(2.5)),
        ("zero_scalar", torch.tensor(0.0)),
        ("int_scalar", torch.tensor(0, dtype=torch.long)),
        ("half", torch.tensor([0.0, -1.5, 0.0, 3.0], dtype=torch.float16)),
        ("bf16", torch.tensor([[0.0, 2.0]], dtype=torch.bfloat16)),
        ("neg_zero", torch.tensor([-0.0, 0.0, 1.0])),
        ("transposed", dense.t()),  # non-contiguous view
        ("empty", torch.zeros(0, 3)),
        ("mask", torch.tensor([True, False, True])),
    ])


def test_sparse_round_trip_is_exact(tmp_path: Path) -> None:
    state = awkward_state()
    save_sparse(state, tmp_path / "m.sparse")
    loaded = load_sparse(tmp_path / "m.sparse")
    assert list(loaded) == list(state)
    for name, tensor in state.items():
        assert loaded[name].dtype == tensor.dtype and loaded[name].shape == tensor.shape, name
        assert torch.equal(loaded[name], tensor), name
    assert torch.equal(torch.signbit(loaded["neg_zero"]), torch.tensor([True, False, False]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.sparse"]  # no .tmp left behind


def test_sparse_round_trip_keeps_state_dict_metadata(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    save_sparse(model.state_dict(), tmp_path / "m.sparse")
    loaded = load_sparse(tmp_path / "m.sparse")
    assert loaded._metadata == model.state_dict()._metadata
    nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2)).load_state_dict(loaded)


def test_sparse_file_is_smaller_for_a_mostly_zero_model(tmp_path: Path) -> None:
    state = sparse_linear_model(0.9).state_dict()
    save_dense(state, tmp_path / "dense.pt")
    save_sparse(state, tmp_path / "sparse.bin")
    assert file_size(tmp_path / "sparse.bin") < file_size(tmp_path / "dense.pt") / 2
    assert torch.load(tmp_path / "dense.pt", weights_only=True).keys() == state.keys()


def test_load_sparse_rejects_other_files(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    torch.save({"format": "something-else"}, buffer)
    (tmp_path / "x").write_bytes(zlib.compress(buffer.getvalue()))
    with pytest.raises(ValueError, match="not a progprune-sparse-v1 file"):
        load_sparse(tmp_path / "x")


# --- sparse kernels -----------------------------------------------------------------------------------------

def test_sparse_linear_matches_dense_linear() -> None:
    dense = sparse_linear_model(0.8)
    sparse = SparseLinear.from_linear(dense)
    assert sparse.weight.layout == torch.sparse_csr
    assert sparse.weight._nnz() == int(torch.count_nonzero(dense.weight))
    for shape in [(1, 64), (17, 64), (2, 5, 64), (64,)]:
        x = torch.randn(shape)
        with torch.no_grad():
            assert sparse(x).shape == dense(x).shape
        assert max_abs_diff(dense, sparse, x) < 1e-5
    no_bias = nn.Linear(64, 8, bias=False)
    assert max_abs_diff(no_bias, SparseLinear.from_linear(no_bias), torch.randn(3, 64)) < 1e-5


def test_sparsify_linears_replaces_only_sparse_enough_layers_in_a_copy() -> None:
    model = nn.Sequential(sparse_linear_model(0.9), nn.ReLU(), nn.Sequential(nn.Linear(32, 4)))
    replaced, names = sparsify_linears(model, min_sparsity=0.5)
    assert names == ["0"]
    assert isinstance(replaced[0], SparseLinear) and isinstance(replaced[2][0], nn.Linear)
    assert isinstance(model[0], nn.Linear)  # original untouched
    assert max_abs_diff(model, replaced, torch.randn(4, 64)) < 1e-5
    _, names = sparsify_linears(model, min_sparsity=0.0)
    assert names == ["0", "2.0"]
    root, names = sparsify_linears(sparse_linear_model(0.9), min_sparsity=0.5)
    assert isinstance(root, SparseLinear) and names == [""]
    again = copy.deepcopy(replaced)  # a model holding CSR tensors still deep-copies
    assert max_abs_diff(replaced, again, torch.randn(2, 64)) == 0.0


# --- latency (keys and ordering only: no timing thresholds) ---------------------------------------------------

def test_measure_latency_keys_order_and_thread_restore() -> None:
    threads = torch.get_num_threads()
    model = toy().train()
    result = measure_latency(model, torch.randn(10, 1, 4, 4), batch_size=4, warmup=1, repeats=5, threads=1,
                             device=torch.device("cpu"))
    assert set(result) == SPREAD_KEYS | {"samples"} and len(result["samples"]) == 5
    assert 0 < result["p10"] <= result["median"] <= result["p90"]
    assert torch.get_num_threads() == threads and model.training


def test_measure_latency_rejects_empty_input() -> None:
    with pytest.raises(ValueError, match="need inputs"):
        measure_latency(toy(), torch.zeros(0, 1, 4, 4), 4, 0, 1, 1, torch.device("cpu"))


def test_latency_report_has_the_documented_keys() -> None:
    report = latency_report(toy(), torch.randn(70, 1, 4, 4), eval_batch_size=32, latency_batch=1, warmup=1,
                            repeats=3, threads=1, device=torch.device("cpu"))
    assert set(report) == {"device", "threads", "warmup", "repeats", "batch1_repeats", "min_repeats", "max_repeats",
                           "target_spread", "eval_batch_size", "eval_samples", "latency_batch", "timing",
                           "eval_runtime_s", "batch1_ms", "throughput_sps"}
    assert (report["repeats"], report["batch1_repeats"], report["max_repeats"], report["target_spread"]) == (3, 3, 3,
                                                                                                            None)
    assert (report["device"], report["threads"], report["eval_samples"]) == ("cpu", 1, 70)
    for key in ("eval_runtime_s", "batch1_ms"):
        assert set(report[key]) == SPREAD_KEYS
        assert report[key]["p10"] <= report[key]["median"] <= report[key]["p90"]
    assert report["throughput_sps"] == pytest.approx(70 / report["eval_runtime_s"]["median"])


def test_interleaved_timing_takes_turns() -> None:
    calls: list[str] = []

    class Probe(nn.Module):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(self.name)
            return x

    result = measure_interleaved({"a": Probe("a"), "b": Probe("b")}, torch.randn(4, 2), batch_size=4, warmup=1,
                                 repeats=2, threads=1, device=torch.device("cpu"))
    assert calls == ["a", "b"] * 3  # one warm-up and two timed turns, alternating
    assert [len(result[k]["samples"]) for k in ("a", "b")] == [2, 2]


class Ticking(nn.Module):
    """Each forward pass advances a fake clock by the next of its given durations."""

    def __init__(self, clock: list[float], durations: list[float]) -> None:
        super().__init__()
        self.clock, self.durations = clock, iter(durations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.clock[0] += next(self.durations)
        return x


def timed_rounds(monkeypatch: pytest.MonkeyPatch, durations: dict[str, list[float]], **rule: Any) -> list[int]:
    clock = [0.0]
    monkeypatch.setattr(latency, "_clock", lambda device: clock[0])
    models = {name: Ticking(clock, times) for name, times in durations.items()}
    result = measure_interleaved(models, torch.zeros(4, 2), batch_size=4, warmup=0, threads=1,
                                 device=torch.device("cpu"), **rule)
    return [len(result[name]["samples"]) for name in durations]


def test_timing_stops_at_min_repeats_when_every_model_is_steady(monkeypatch: pytest.MonkeyPatch) -> None:
    rounds = timed_rounds(monkeypatch, {"a": [1.0] * 20, "b": [2.0] * 20}, repeats=20, min_repeats=3,
                          target_spread=0.05)
    assert rounds == [3, 3]


def test_timing_goes_on_to_the_maximum_while_one_model_is_noisy(monkeypatch: pytest.MonkeyPatch) -> None:
    rounds = timed_rounds(monkeypatch, {"a": [1.0] * 20, "b": [1.0, 2.0] * 10}, repeats=12, min_repeats=3,
                          target_spread=0.05)
    assert rounds == [12, 12]


def test_timing_stops_at_the_first_round_whose_spread_is_small_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    # One slow first pass, then steady: with n passes sorted, p90 sits at index 0.9·(n − 1), which still reaches the
    # slow one for n <= 10 (p90 = 1.1 at n = 10: spread 10%) and first misses it at n = 11 (spread 0).
    rounds = timed_rounds(monkeypatch, {"a": [2.0] + [1.0] * 30}, repeats=30, min_repeats=2, target_spread=0.05)
    assert rounds == [11]
    assert relative_spread([2.0] + [1.0] * 9) == pytest.approx(0.1)


def test_without_a_target_spread_every_repeat_is_made(monkeypatch: pytest.MonkeyPatch) -> None:
    assert timed_rounds(monkeypatch, {"a": [1.0] * 20}, repeats=7, min_repeats=2, target_spread=None) == [7]
    # min_repeats above repeats is capped: the maximum still holds.
    assert timed_rounds(monkeypatch, {"a": [1.0] * 20}, repeats=4, min_repeats=9, target_spread=0.05) == [4]
