#!/usr/bin/env bash
# Long CPU training in the background: one thread, niced, resumable, state outside the clone.
#
#   tools/train_background.sh [CONFIG] [extra vimpnet-ros train arguments]      # default CONFIG: vimpnet_lite_gated
#
# The run lives in $VIMPNET_STATE_DIR/runs/CONFIG (default ~/.local/state/vimpnet_ros), which a later clone on the
# same machine finds: a run with checkpoints there is resumed exactly (--resume auto). On a new machine the run
# continues from the newest weights kept in the repository (training_state/CONFIG.pth, copied there with
# tools/keep_training_state.sh) at their step (--start-step: the schedule and the data go on where they were, the
# optimizer's moments start afresh), and only without those starts from the config's init_from. The log goes to
# RUN/train.log; the process id to RUN/train.pid.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
config=${1:-vimpnet_lite_gated}
shift || true
state=${VIMPNET_STATE_DIR:-$HOME/.local/state/vimpnet_ros}
run=$state/runs/$config
mkdir -p "$run"
if [ -f "$run/train.pid" ] && kill -0 "$(cat "$run/train.pid")" 2>/dev/null; then
    echo "already training: pid $(cat "$run/train.pid"), log $run/train.log"
    exit 0
fi
if [ -f "$run/checkpoints/latest.json" ]; then
    start=(--resume auto)
elif [ -f "$repo/training_state/$config.pth" ]; then
    kept=$repo/training_state/$config.json
    step=$(sed -n 's/.*"step": \([0-9]*\).*/\1/p' "$kept")
    total=$(sed -n 's/.*"total_steps": \([0-9]*\).*/\1/p' "$kept")
    start=(--init-from "$repo/training_state/$config.pth" --start-step "$step")
    # The steps behind this run's step 0, so tools/keep_training_state.sh can count the steps in all.
    printf '{"config": "%s", "total_steps": %s, "continued_at": %s}\n' "$config" "$(( total - step ))" "$step" \
        >"$run/started_from.json"
else
    start=()
fi
cd "$state"   # relative data folders (the validation cache) live beside the runs
# The code of this checkout, even where the environment's editable install points at another one.
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
nohup nice -n 19 "$repo/.venv/bin/vimpnet-ros" train --config "$config" --out-dir "$run" "${start[@]}" "$@" \
    >>"$run/train.log" 2>&1 &
echo $! >"$run/train.pid"
echo "training $config: pid $!, log $run/train.log"
