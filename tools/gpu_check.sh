#!/usr/bin/env bash
# The GPU check: on a CUDA machine with vtk installed, in about 8 minutes, what a GPU changes:
#
#   bash tools/gpu_check.sh [--camvid path/to/CamVid] [--out DIR]
#   bash tools/gpu_check.sh --dry-run     # every step on the CPU, tiny: checks the script (CI)
#
# 1. the CUDA-marked tests (tests/test_cuda.py: a 16-mixed fit, SyncBN under DDP/NCCL, GPU
#    against CPU outputs, the predictor's fast path);
# 2. benchmark.py train: each task's reference architecture, vtk fp32 / channels_last /
#    + bf16 / + fp16 AMP / + torch.compile against torchvision's eager fp32 step;
# 3. benchmark.py inference: vtk's fast path against torchvision, ResNet-50 and FCOS;
# 4. a 1-GPU DDP (NCCL) fit of the demo recipe;
# 5. one CamVid epoch of deeplabv3plus_resnet18_camvid_scratch per precision switch (with
#    --camvid; otherwise on a synthetic set of CamVid's size and shape, said in the table).
# Each step's output goes to DIR/<step>.log; the table at the end gives each step's status and
# time, then the benchmarks' own figures.
set -uo pipefail
cd "$(dirname "$0")/.."
export NO_ALBUMENTATIONS_UPDATE=1 PYTHONUNBUFFERED=1

dry=0
camvid=""
out="gpu_check_out"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dry-run) dry=1 ;;
        --camvid) camvid="$2"; shift ;;
        --out) out="$2"; shift ;;
        *) echo "gpu_check.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
mkdir -p "$out"
python=${PYTHON:-python3}
vtk_cmd=(${VTK:-vtk})

if [[ $dry == 1 ]]; then
    device=cpu; accelerator=cpu; strategy_devices=(--trainer.devices 1)
    train_args=(--arch resnet50 --batch 1 --size 64 --steps 1 --warmup 0)
    infer_args=(--batch 1 --size 64 --steps 1 --warmup 0)
    fit_args=(--trainer.max_steps 2 --trainer.limit_val_batches 1 --data.crop_size 64
              --data.num_workers 0)
    epoch_args=(--epochs 1 --limit 2 --workers 0)
    images=16
else
    device=cuda; accelerator=gpu; strategy_devices=(--trainer.devices 1)
    train_args=(--steps 10 --warmup 3 --compile)
    infer_args=(--batch 32 --size 224 --steps 20 --warmup 5 --channels_last)
    fit_args=(--trainer.max_steps 60 --trainer.limit_val_batches 4 --data.num_workers 4)
    epoch_args=(--epochs 1 --workers 8)
    images=367
fi

names=(); statuses=(); seconds=()
step() {  # step NAME COMMAND...: run it, its output in $out/NAME.log, and remember how it went
    local name=$1; shift
    echo "== $name: $*"
    local start=$SECONDS
    if "$@" >"$out/$name.log" 2>&1; then local status=ok; else local status="FAILED ($?)"; fi
    names+=("$name"); statuses+=("$status"); seconds+=($((SECONDS - start)))
    tail -n 25 "$out/$name.log"
}

step environment "$python" -c "
import torch, platform, vtk
print('vtk', vtk.__version__, 'torch', torch.__version__, 'python', platform.python_version())
print('cuda', torch.cuda.is_available(), torch.cuda.get_device_name() if torch.cuda.is_available() else '-')
"
if [[ $dry == 1 ]]; then  # no GPU: the marked tests skip, which checks they are collected
    step cuda_tests "$python" -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider
else
    step cuda_tests "$python" -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider -x
fi
step train_benchmark "$python" tools/benchmark.py train --device "$device" "${train_args[@]}"
step inference_resnet50 "$python" tools/benchmark.py inference --device "$device" \
    --arch resnet50 "${infer_args[@]}"
step inference_fcos "$python" tools/benchmark.py inference --device "$device" \
    --arch fcos_resnet50_fpn --batch 2 --size $([[ $dry == 1 ]] && echo 128 || echo 800) \
    --steps $([[ $dry == 1 ]] && echo 1 || echo 10) --warmup $([[ $dry == 1 ]] && echo 0 || echo 3)
step ddp_fit env --chdir "$out" "${vtk_cmd[@]}" fit demo_segmentation \
    --trainer.accelerator "$accelerator" "${strategy_devices[@]}" --trainer.strategy ddp \
    --trainer.enable_progress_bar false "${fit_args[@]}"  # its run folder in $out/runs

if [[ -z $camvid ]]; then  # a stand-in of CamVid's size and shape: 480x360 PNGs, 11 classes
    camvid="$out/camvid_synthetic"
    "$python" - "$camvid" "$images" <<'EOF'
import sys
from pathlib import Path
import numpy as np
from PIL import Image
root, n = Path(sys.argv[1]), int(sys.argv[2])
rng = np.random.default_rng(0)
for split, count in (("train", n), ("val", max(2, n // 4)), ("test", 2)):
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        blocks = rng.integers(0, 11, (9, 12), dtype=np.uint8)
        mask = np.kron(blocks, np.ones((40, 40), np.uint8))
        image = (mask[..., None] * 20 + rng.integers(0, 30, (360, 480, 3))).astype(np.uint8)
        Image.fromarray(image).save(root / split / f"{i:04d}.png")
        Image.fromarray(mask).save(root / f"{split}annot" / f"{i:04d}.png")
EOF
    camvid_note="synthetic CamVid-shaped set ($images images)"
else
    camvid_note="$camvid"
fi
step camvid_epoch "$python" tools/benchmark.py epochs --device "$device" \
    --recipe deeplabv3plus_resnet18_camvid_scratch --data.root "$camvid" "${epoch_args[@]}"

echo
echo "GPU check ($([[ $dry == 1 ]] && echo "dry run on the CPU" || echo "$device")); CamVid: $camvid_note"
printf '| %-20s | %-12s | %8s |\n' step status seconds
printf '| %-20s | %-12s | %8s |\n' "---" "---" "---"
failed=0
for i in "${!names[@]}"; do
    printf '| %-20s | %-12s | %8s |\n' "${names[$i]}" "${statuses[$i]}" "${seconds[$i]}"
    [[ ${statuses[$i]} == ok ]] || failed=1
done
exit $failed
