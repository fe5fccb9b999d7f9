"""Wall-clock inference time of a model over a fixed input tensor: median and spread of repeated full passes,
repeated until the spread is small enough or a maximum is reached."""

from __future__ import annotations

import time
from contextlib import ExitStack

import numpy as np
import torch
from torch import nn

from progprune_cli.measure.modes import evaluating


def spread(samples: list[float]) -> dict[str, float]:
    """`{"median", "p10", "p90"}` by linear interpolation, so p10 <= median <= p90 always holds."""
    p10, median, p90 = np.percentile(np.asarray(samples, dtype=float), [10, 50, 90])
    return {"median": float(median), "p10": float(p10), "p90": float(p90)}


def relative_spread(samples: list[float]) -> float:
    """(p90 − p10) / median: the width of the middle 80% of the timings as a share of their median."""
    s = spread(samples)
    return (s["p90"] - s["p10"]) / s["median"] if s["median"] > 0 else float("inf")


def fewest_repeats(repeats: int, min_repeats: int | None, target_spread: float | None) -> int:
    """The timed passes always made: `min_repeats` capped by `repeats`, or all `repeats` without a target."""
    return repeats if target_spread is None else min(repeats, max(1, min_repeats or 1))


def _clock(device: torch.device) -> float:
    # CUDA calls return before the kernels finish; without a sync the clock would time the launch, not the work.
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def _check_device(model: nn.Module, device: torch.device) -> None:
    for tensor in list(model.parameters()) + list(model.buffers()):
        if tensor.device.type != device.type:
            raise ValueError(f"model holds a tensor on {tensor.device}, but latency is measured on {device}")


def measure_latency(model: nn.Module, inputs: torch.Tensor, batch_size: int, warmup: int, repeats: int,
                    threads: int, device: torch.device, *, min_repeats: int | None = None,
                    target_spread: float | None = None) -> dict:
    """Seconds for one full pass over `inputs` in batches of `batch_size`: `{"median", "p10", "p90", "samples"}`."""
    return measure_interleaved({"model": model}, inputs, batch_size, warmup, repeats, threads, device,
                               min_repeats=min_repeats, target_spread=target_spread)["model"]


def measure_interleaved(models: dict[str, nn.Module], inputs: torch.Tensor, batch_size: int, warmup: int,
                        repeats: int, threads: int, device: torch.device, *, min_repeats: int | None = None,
                        target_spread: float | None = None) -> dict[str, dict]:
    """`measure_latency` for several models timed in turns (A B C A B C ...), so that drift in the machine's
    speed (frequency, other load) hits every model alike instead of whichever happened to be timed first.

    The models must already be on `device`; the inputs are moved there before any timing, so data transfer is
    never timed. `warmup` untimed passes of each model come first (allocator, oneDNN/cuDNN kernel selection).

    Stopping: with `target_spread` set, timing stops after the first round (of at least `min_repeats`, capped by
    `repeats`) in which every model's `relative_spread` is at most `target_spread`, and at `repeats` rounds
    otherwise; without it, exactly `repeats` rounds. A quiet machine is measured quickly, a noisy one as long as
    allowed, and every model always gets the same number of turns.
    """
    if len(inputs) == 0 or batch_size < 1 or repeats < 1 or warmup < 0 or threads < 1:
        raise ValueError(f"need inputs, batch_size >= 1, repeats >= 1, warmup >= 0, threads >= 1 "
                         f"(got {len(inputs)} inputs, {batch_size=}, {repeats=}, {warmup=}, {threads=})")
    if target_spread is not None and not target_spread > 0:
        raise ValueError(f"target_spread must be > 0 or None (got {target_spread})")
    least = fewest_repeats(repeats, min_repeats, target_spread)
    for model in models.values():
        _check_device(model, device)
    batches = inputs.to(device).split(batch_size)
    samples: dict[str, list[float]] = {name: [] for name in models}
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with ExitStack() as stack, torch.inference_mode():
            for model in models.values():
                stack.enter_context(evaluating(model))
            for i in range(warmup + repeats):
                for name, model in models.items():
                    start = _clock(device)
                    for batch in batches:
                        model(batch)
                    elapsed = _clock(device) - start
                    if i >= warmup:
                        samples[name].append(elapsed)
                done = i + 1 - warmup
                if done >= least and target_spread is not None and all(
                        relative_spread(times) <= target_spread for times in samples.values()):
                    break
    finally:
        torch.set_num_threads(previous_threads)
    return {name: {**spread(times), "samples": times} for name, times in samples.items()}


def peak_memory(models: dict[str, nn.Module], inputs: torch.Tensor, batch_size: int,
                device: torch.device) -> dict[str, int | None]:
    """Peak bytes torch allocated on the GPU during one untimed pass of each model over `inputs` in batches of
    `batch_size` (the peak is reset before each model); None for every model off CUDA, where torch keeps no count."""
    if device.type != "cuda":
        return {name: None for name in models}
    batches = inputs.to(device).split(batch_size)
    peaks: dict[str, int | None] = {}
    with ExitStack() as stack, torch.inference_mode():
        for model in models.values():
            stack.enter_context(evaluating(model))
        for name, model in models.items():
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            for batch in batches:
                model(batch)
            torch.cuda.synchronize(device)
            peaks[name] = int(torch.cuda.max_memory_allocated(device))
    return peaks


# batch1_ms is timed on the first this-many timing inputs: each timed pass is their mean, so 32 calls give a steady
# figure (spreads of 1-3% on issue 19's case) at half the cost of the 64 it was (README, Runner overhead).
PER_SAMPLE_INPUTS = 32


def per_sample_ms(models: dict[str, nn.Module], inputs: torch.Tensor, latency_batch: int, warmup: int, repeats: int,
                  threads: int, device: torch.device, *, min_repeats: int | None = None,
                  target_spread: float | None = None) -> dict[str, dict]:
    """Milliseconds per sample of each model (`{"median", "p10", "p90", "repeats"}`): the first PER_SAMPLE_INPUTS
    of `inputs` fed `latency_batch` at a time, timed by `measure_interleaved` (the Speed table's batch-1 latency;
    strategy.target.latency_ms times its candidates with it too)."""
    few = inputs[:PER_SAMPLE_INPUTS]
    per_pass = measure_interleaved(models, few, latency_batch, warmup, repeats, threads, device,
                                   min_repeats=min_repeats, target_spread=target_spread)
    # Scaling by a positive constant keeps the order, so these are still the per-sample median/p10/p90.
    return {name: {**{key: timed[key] * 1000.0 / len(few) for key in ("median", "p10", "p90")},
                   "repeats": len(timed["samples"])} for name, timed in per_pass.items()}


def latency_report(model: nn.Module, inputs: torch.Tensor, eval_batch_size: int, latency_batch: int, warmup: int,
                   repeats: int, threads: int, device: torch.device, *, min_repeats: int | None = None,
                   target_spread: float | None = None) -> dict:
    """The MODEL.latency dict of results.json for one model (see `latency_reports`)."""
    return latency_reports({"model": model}, inputs, eval_batch_size, latency_batch, warmup, repeats, threads,
                           device, min_repeats=min_repeats, target_spread=target_spread)["model"]


def latency_reports(models: dict[str, nn.Module], inputs: torch.Tensor, eval_batch_size: int, latency_batch: int,
                    warmup: int, repeats: int, threads: int, device: torch.device, *, min_repeats: int | None = None,
                    target_spread: float | None = None) -> dict[str, dict]:
    """The MODEL.latency dict of results.json for each model, less `measured_speedup` (the caller divides the
    original's median). All models are timed interleaved, under identical settings and stopping rule
    (`measure_interleaved`).

    `eval_runtime_s` times the whole evaluation tensor at `eval_batch_size` (`repeats` timed passes were made);
    `batch1_ms` is milliseconds per sample over the first (up to) PER_SAMPLE_INPUTS samples fed `latency_batch` at a
    time (`batch1_repeats` passes); `throughput_sps` uses the median runtime; `peak_memory_bytes` (on CUDA only; the
    results schema reads its absence as null) is `peak_memory` of the model.
    """
    settings = {"warmup": warmup, "repeats": repeats, "threads": threads, "device": device,
                "min_repeats": min_repeats, "target_spread": target_spread}
    runtime = measure_interleaved(models, inputs, eval_batch_size, **settings)
    per_sample = per_sample_ms(models, inputs, latency_batch, **settings)
    peaks = peak_memory(models, inputs, eval_batch_size, device)
    reports = {}
    for name in models:
        median = runtime[name]["median"]
        reports[name] = {
            "device": str(device),
            "threads": threads,
            "warmup": warmup,
            "repeats": len(runtime[name]["samples"]),  # timed passes made (the stopping rule may end early)
            "batch1_repeats": per_sample[name]["repeats"],
            "min_repeats": fewest_repeats(repeats, min_repeats, target_spread),
            "max_repeats": repeats,
            "target_spread": target_spread,  # null: exactly max_repeats passes
            "eval_batch_size": eval_batch_size,
            "eval_samples": len(inputs),
            "latency_batch": latency_batch,  # batch1_ms is per-sample time at this batch size (1 by default)
            "timing": "interleaved",  # every model timed in turns within each repeat
            "eval_runtime_s": {key: runtime[name][key] for key in ("median", "p10", "p90")},
            "batch1_ms": {key: per_sample[name][key] for key in ("median", "p10", "p90")},
            "throughput_sps": len(inputs) / median if median > 0 else None,
        }
        if peaks[name] is not None:
            reports[name]["peak_memory_bytes"] = peaks[name]
    return reports
