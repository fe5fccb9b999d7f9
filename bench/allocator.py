"""glibc's malloc defaults vs progprune_cli.allocator.keep_freed_memory: seconds and page faults of an evaluate
stage's accuracy passes (batch 128, no gradients) and of training steps (batch 32), each in a fresh process, the
two settings interleaved.

    cd bench && ../.venv/bin/python allocator.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from machine import cpu_name, load_average  # bench/machine.py (scripts run from bench/)

SHAPES = {"two_conv_cnn": (1, 28), "resnet20": (3, 32), "lenet300": (1, 28)}

# One process: build the model as a run does, then time three accuracy passes and three epochs' worth of training
# steps over the same random inputs (the first pass and the first steps untimed); faults are minor page faults.
WORK = """
import json, resource, sys, time, torch, yaml
from pathlib import Path
from progprune_cli.allocator import keep_freed_memory
from progprune_cli.catalog import *
from progprune_cli.config.load import load_component
from progprune_cli.data import DataInfo
from progprune_cli.models import build_model
name, channels, side, mode = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if mode == "kept":
    keep_freed_memory({})
values = yaml.safe_load((Path("../conf/model") / f"{name}.yaml").read_text())
values.pop("defaults", None)
info = DataInfo(channels=channels, height=side, width=side, num_classes=10, classes=tuple(map(str, range(10))))
model = build_model(load_component("model", values), info)
x = torch.randn(2048, channels, side, side, generator=torch.Generator().manual_seed(0))
y = torch.randint(0, 10, (2048,), generator=torch.Generator().manual_seed(1))
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
def evaluate():
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(x), 128):
            model(x[i:i + 128])
optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
def train():
    model.train()
    for i in range(0, 1024, 32):
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x[i:i + 32]), y[i:i + 32]).backward()
        optimizer.step()
out = {}
for label, work in (("eval", evaluate), ("train", train)):
    work()
    seconds, before = [], faults()
    for _ in range(3):
        start = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - start)
    out[label] = {"s": sorted(seconds)[1], "faults": (faults() - before) / 3}
print(json.dumps(out))
"""


def one(name: str, mode: str) -> dict:
    channels, side = SHAPES[name]
    done = subprocess.run([sys.executable, "-c", WORK, name, str(channels), str(side), mode], capture_output=True,
                          text=True, check=True, env={"PATH": "/usr/bin:/bin"})  # no MALLOC_* from this shell
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported")
    args = parser.parse_args()
    print(f"# {cpu_name()}, load {load_average()}; median over {args.rounds} interleaved rounds (fresh processes)")
    print("# accuracy pass: 2,048 inputs at batch 128; training: 32 steps at batch 32 (SGD); 2 threads (default)")
    print("| model | accuracy pass, defaults | kept | ratio | faults, defaults / kept | training, defaults | kept "
          "| ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in SHAPES:
        got: dict[str, list[dict]] = {"default": [], "kept": []}
        for _ in range(args.rounds):
            for mode in got:
                got[mode].append(one(name, mode))
        med = {mode: {part: {key: statistics.median(r[part][key] for r in runs) for key in ("s", "faults")}
                      for part in ("eval", "train")} for mode, runs in got.items()}
        d, k = med["default"], med["kept"]
        print(f"| {name} | {d['eval']['s']:.3f} s | {k['eval']['s']:.3f} s | {d['eval']['s'] / k['eval']['s']:.2f}× "
              f"| {d['eval']['faults']:.0f} / {k['eval']['faults']:.0f} | {d['train']['s']:.3f} s "
              f"| {k['train']['s']:.3f} s | {d['train']['s'] / k['train']['s']:.2f}× |", flush=True)


if __name__ == "__main__":
    main()
