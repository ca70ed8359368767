#!/usr/bin/env bash
# Keep a background run's newest weights in the repository, so a new machine resumes from them, not from zero.
#
#   tools/keep_training_state.sh [CONFIG]            # default CONFIG: vimpnet_lite_gated
#
# Copies the weights of the newest checkpoints/iter_*.pth of $VIMPNET_STATE_DIR/runs/CONFIG (see
# tools/train_background.sh), in fp16 as the shipped weights are (half the size), to training_state/CONFIG.pth and
# writes training_state/CONFIG.json (step, source file, time). Commit both.
# Only weights travel (the optimizer state stays on the machine): train_background.sh on a new machine continues
# the run from them at their step, with fresh optimizer moments (vimpnet-ros train --start-step).
set -euo pipefail
cd "$(dirname "$0")/.."
config=${1:-vimpnet_lite_gated}
state=${VIMPNET_STATE_DIR:-$HOME/.local/state/vimpnet_ros}
folder=$state/runs/$config/checkpoints
newest=$(ls -1 "$folder"/iter_*.pth 2>/dev/null | sort | tail -n 1 || true)
if [ -z "$newest" ]; then
    echo "no checkpoint in $folder" >&2
    exit 2
fi
step=$(basename "$newest" .pth | sed 's/^iter_0*//')
mkdir -p training_state
"$PWD/.venv/bin/python" -c 'import sys; from vimpnet_ros.training.checkpoints import keep_weights; keep_weights(*sys.argv[1:])' \
    "$newest" "training_state/$config.pth"
# Steps in all: this run's, plus those of the weights it started from (train_background.sh keeps their JSON).
before=0
if [ -f "$state/runs/$config/started_from.json" ]; then
    before=$(sed -n 's/.*"total_steps": \([0-9]*\).*/\1/p' "$state/runs/$config/started_from.json")
    [ -n "$before" ] || before=$(sed -n 's/.*"step": \([0-9]*\).*/\1/p' "$state/runs/$config/started_from.json")
fi
total=$(( ${before:-0} + ${step:-0} ))
printf '{"config": "%s", "step": %s, "total_steps": %s, "source": "%s", "kept_at": "%s"}\n' "$config" "${step:-0}" \
    "$total" "$(basename "$newest")" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"training_state/$config.json"
echo "kept step ${step:-0} of $config ($total in all) in training_state/$config.pth"
