#!/usr/bin/env bash
# One prepared CUDA check for a lent GPU, under 5 minutes on one GPU; stops loudly at the first failure.
#   1. the GPU (nvidia-smi) and torch's view of it
#   2. the default pipeline (digits, two_conv_cnn, +strategy=weight) with device=cuda
#   3. a CIFAR-10-shaped ResNet-56 structured run (synthetic 3x32x32, 10 classes) for a few epochs at fp32, then bf16
#   4. the same at fp16 (GradScaler) with channels_last, and a torch.compile run of the small default model
#   5. with 2 or more GPUs: the ResNet-56 run under torchrun on 2 ranks (nccl), checking the ranks' checksums agree
#   6. bench/sparse24.py (2:4 kernels vs dense) when it exists
# Per-epoch wall times come from each run's run.log ("STAGE: epoch N took S s"), the test accuracy and peak GPU memory
# from its results.json. Run folders go under $OUT (the device tool's output folder) or a fresh temp folder.
#
#   bash bench/gpu_check.sh                                      # on the GPU machine, from anywhere
#   GPU_CHECK_DEVICE=cpu GPU_CHECK_SMOKE=1 bash bench/gpu_check.sh   # a quick dry run of the script itself on a CPU
set -euo pipefail

cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT=${OUT:-$(mktemp -d)}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
SMOKE=${GPU_CHECK_SMOKE:-0}
mkdir -p "$OUT"

# ResNet-56 sizes: 12000 synthetic samples -> 6000 train, 3000 val, 3000 test; 47 steps of 128 per epoch.
SAMPLES=12000 TRAIN=3 PRUNE=2 FINETUNE=1 REPEATS=5
if [ "$SMOKE" = 1 ]; then SAMPLES=512 TRAIN=1 PRUNE=1 FINETUNE=1 REPEATS=1; fi

section() { printf '\n== %s ==\n' "$*"; }

# progprune train with the given overrides into $OUT/NAME, then its epoch times, accuracy and peak memory.
train() {
    local name=$1; shift
    local started=$SECONDS
    "$PY" -m progprune_cli train device="$DEVICE" train.reuse=false "$@" hydra.run.dir="$OUT/$name" \
        > "$OUT/$name.out" 2>&1 || { echo "FAILED: $name (exit $?); its output:"; tail -n 40 "$OUT/$name.out"; exit 1; }
    echo "$name: finished in $((SECONDS - started)) s (run folder $OUT/$name)"
    grep -E '^[a-z_]+: epoch [0-9]+ took ' "$OUT/$name/run.log" | sed 's/^/  /'
    "$PY" - "$OUT/$name/results.json" <<'EOF'
import json, sys
results = json.load(open(sys.argv[1]))
for name, model in results["models"].items():
    peak = model["latency"].get("peak_memory_bytes")
    print(f"  {name}: test acc {model['accuracy']['test']:.4f}, eval median {model['latency']['eval_runtime_s']['median']:.4g} s, "
          f"peak GPU memory {'n/a' if peak is None else f'{peak / 1e6:.1f} MB'}")
EOF
}

section "GPU"
if [ "$DEVICE" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
else
    echo "GPU_CHECK_DEVICE=$DEVICE: no GPU queried (dry run)"
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'available:', torch.cuda.is_available(),
          torch.cuda.get_device_name() if torch.cuda.is_available() else '')"

section "default pipeline, device=$DEVICE"
if [ "$SMOKE" = 1 ]; then
    train default +strategy=weight train.epochs=1 prune.epochs=1 finetune.epochs=1 evaluate.repeats=1
else
    train default +strategy=weight
fi

RESNET=(model=resnet56 +strategy=structured dataset=synthetic dataset.samples=$SAMPLES dataset.size=32
        dataset.channels=3 dataset.num_classes=10 optimizer=sgd optimizer.lr=0.05 train.epochs=$TRAIN
        prune.epochs=$PRUNE finetune.epochs=$FINETUNE train.batch_size=128 prune.batch_size=128
        finetune.batch_size=128 evaluate.dense_baseline=false evaluate.repeats=$REPEATS evaluate.warmup=2)
section "ResNet-56 structured, CIFAR-10-shaped synthetic data, fp32"
train resnet56_fp32 "${RESNET[@]}" train.precision=fp32
section "ResNet-56 structured, bf16 autocast"
train resnet56_bf16 "${RESNET[@]}" train.precision=bf16

if [ "$DEVICE" = cuda ]; then
    section "ResNet-56 structured, fp16 autocast + GradScaler, channels_last"
    train resnet56_fp16_cl "${RESNET[@]}" train.precision=fp16 train.channels_last=true train.epochs=1 prune.epochs=1
else
    echo "fp16 needs CUDA: skipped on $DEVICE"
fi

section "train.compile=true (default model, 1 epoch per stage)"
train compile +strategy=weight train.compile=true train.epochs=1 prune.epochs=1 finetune.epochs=1 \
    evaluate.dense_baseline=false evaluate.repeats=2

section "torchrun DDP on 2 ranks (nccl on GPUs)"
GPUS=0
if [ "$DEVICE" = cuda ]; then GPUS=$(nvidia-smi -L | grep -c '^GPU' || true); fi
GPUS=${GPU_CHECK_RANKS:-$GPUS}  # GPU_CHECK_RANKS=2 with GPU_CHECK_DEVICE=cpu: the same check on gloo (dry run)
if [ "$GPUS" -ge 2 ]; then
    # torch.distributed.run is torchrun's own module: the same launcher, found through this python.
    "$PY" -m torch.distributed.run --nproc_per_node=2 --standalone -m progprune_cli train device="$DEVICE" train.reuse=false \
        "${RESNET[@]}" train.epochs=1 prune.epochs=1 hydra.run.dir="$OUT/ddp" > "$OUT/ddp.out" 2>&1 \
        || { echo "FAILED: torchrun (exit $?); its output:"; tail -n 40 "$OUT/ddp.out"; exit 1; }
    grep -E 'torchrun:|checksums|took' "$OUT/ddp/run.log" | sed 's/^/  /'
    if grep -qE 'computed different masks|weights differ' "$OUT/ddp/run.log"; then echo "FAILED: ranks disagree"; exit 1; fi
else
    echo "$GPUS GPU(s): the 2-rank DDP check needs 2; skipped"
fi

section "2:4 sparse kernels"
if [ -f bench/sparse24.py ]; then
    "$PY" bench/sparse24.py $( [ "$SMOKE" = 1 ] && echo --sizes 256 --batches 8 --repeats 3 )
else
    echo "bench/sparse24.py is not there; 2:4 benchmark skipped"
fi

section "done: every check passed; run folders under $OUT"
