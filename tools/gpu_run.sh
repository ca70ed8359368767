#!/usr/bin/env bash
# One GPU visit in one call: the GPU check, then training with the time left; everything under $OUT as it goes.
#
#   OUT=/path/to/results tools/gpu_run.sh                         # on the GPU machine, from the repository root
#   OUT=/tmp/gpu_smoke GPU_RUN_DEVICE=cpu GPU_RUN_TOTAL_S=150 GPU_RUN_CHECK_S=50 tools/gpu_run.sh   # CPU rehearsal
#
# Made for a bare machine: Python 3.12, torch + CUDA, numpy, OpenCV, no ROS, no network, the checkout as the
# working directory. Each step runs under its own time limit, so the whole fits GPU_RUN_TOTAL_S (default 560 s,
# inside one 570-s call with room for a second call if the first fails early):
#   1. `vimpnet-ros benchmark gpu` (the GPU check: fidelity, compiled vs eager, latency, cameras, warm restart)
#      with a budget of GPU_RUN_CHECK_S (default 280 s) into $OUT/gpu_check/ (gpu.json, gpu.md after every case);
#   2. tools/train_gpu.py with the rest (the gated recipe, bf16, compiled steps, batch GPU_RUN_BATCH, default 32,
#      checkpoints every 60 s, the frame-level no-harm term at GPU_RUN_NO_WORSE, default 2) into $OUT/train/,
#      starting from training_state/vimpnet_lite_gated.pth when the repository keeps one, else from the shipped
#      weights.
# Logs: $OUT/gpu_check.log, $OUT/train.log; $OUT/gpu_run.json records the steps, their exit codes and seconds.
set -uo pipefail
cd "$(dirname "$0")/.."
: "${OUT:?set OUT to the output folder}"
total=${GPU_RUN_TOTAL_S:-560}
check=${GPU_RUN_CHECK_S:-280}
device=${GPU_RUN_DEVICE:-cuda}
batch=${GPU_RUN_BATCH:-32}
no_worse=${GPU_RUN_NO_WORSE:-2.0}
python=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
started=$(date +%s)
elapsed() { echo $(($(date +%s) - started)); }

quick=()
train_extra=(--compile)
if [ "$device" = cpu ]; then   # the rehearsal: tiny sizes, no compile
    quick=(--quick)
    train_extra=(--batch-size 2 --clips-per-item 2 --crop 64 --size 96 96 --frames 5 --workers 1 --heldout-videos 1 --heldout-frames 6)
fi
timeout --signal=INT --kill-after=15 "$check" "$python" -m vimpnet_ros benchmark gpu --output "$OUT/gpu_check" \
    --device "$device" --budget-s $((check - 20)) "${quick[@]}" >"$OUT/gpu_check.log" 2>&1
check_rc=$?
check_s=$(elapsed)

init=shipped:vimpnet_lite
if [ -f training_state/vimpnet_lite_gated.pth ]; then init=training_state/vimpnet_lite_gated.pth; fi
left=$((total - $(elapsed) - 15))
train_rc=skipped
if [ "$left" -gt 60 ]; then
    timeout --signal=INT --kill-after=15 "$left" "$python" tools/train_gpu.py --out "$OUT/train" \
        --budget-s $((left - 25)) --recipe gated --init-from "$init" --device "$device" --batch-size "$batch" \
        --save-every-s 60 --no-worse "$no_worse" "${train_extra[@]}" >"$OUT/train.log" 2>&1
    train_rc=$?
fi
cat >"$OUT/gpu_run.json" <<JSON
{"check": {"exit_code": $check_rc, "seconds": $check_s}, "train": {"exit_code": "$train_rc", "init_from": "$init"},
 "seconds": $(elapsed), "device": "$device"}
JSON
echo "gpu_run: check exit $check_rc after ${check_s}s, training exit $train_rc, total $(elapsed)s; results in $OUT"
