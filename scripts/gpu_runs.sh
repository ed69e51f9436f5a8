#!/usr/bin/env bash
# End-to-end 100-epoch CNN and GRU runs on a GTZAN-sized dataset, timed from the shell.
#
#   scripts/gpu_runs.sh OUT_DIR [TRACKS_PER_GENRE] [EPOCHS] [TRAIN_OPTION...]
#
# Builds the built-in synthetic dataset with TRACKS_PER_GENRE (default 100: GTZAN's 1,000
# 30 s clips, 3,000 segments), extracts its MFCC store, then trains the seed's CNN and GRU for
# EPOCHS (default 100) epochs each with early stopping off (--patience 0) through the command
# line, as a user would: `genre-jax train` (data loading, compilation, every epoch, checkpoints,
# plots) and `genre-jax evaluate`. The default song split leaves 790 training songs: 2,370
# segments, 4,740 per epoch with the time flip (the GTZAN size is 4,752).
# TRAIN_OPTIONs go to every `genre-jax train` (e.g. --epoch-driver scan); $GPU_RUNS_MODELS picks
# the models (default "cnn gru"). A model's own setting applies to that model only, so pair it
# with the model (e.g. GPU_RUNS_MODELS=gru ... --model-unroll 8, once --gru-unroll). Writes
# OUT_DIR/gpu_runs.json (seconds of each step, the device), OUT_DIR/gpu_runs.log, and each
# run's summary_<model>.json and report_<model>.json.
# Python: $GENRE_JAX_PYTHON (default python3), with genre_jax importable.
set -euo pipefail
out=${1:?usage: scripts/gpu_runs.sh OUT_DIR [TRACKS_PER_GENRE] [EPOCHS] [TRAIN_OPTION...]}
tracks=${2:-100}
epochs=${3:-100}
shift $(($# < 3 ? $# : 3))
models=${GPU_RUNS_MODELS:-cnn gru}
py=${GENRE_JAX_PYTHON:-python3}
mkdir -p "$out"
work=$(mktemp -d)
log="$out/gpu_runs.log"
: >"$log"
declare -A seconds

timed() {  # timed NAME COMMAND...: run, log, record the wall seconds
    local name=$1 start end
    shift
    start=$(date +%s.%N)
    "$@" 2>&1 | tee -a "$log"
    end=$(date +%s.%N)
    seconds[$name]=$("$py" -c "print(round($end - $start, 2))")
    echo "== $name: ${seconds[$name]} s" | tee -a "$log"
}

device=$("$py" -c 'import jax; d = jax.devices()[0]; print(f"{d.device_kind} ({d.platform}), jax {jax.__version__}")')
echo "device: $device" | tee -a "$log"
timed prepare "$py" -m genre_jax.cli prepare --synthetic --tracks-per-genre "$tracks" \
    --out "$work/stores" --no-progress
store=$(find "$work/stores" -mindepth 1 -maxdepth 1 -type d -name 'mfcc-*' | head -1)
for model in $models; do
    timed "train_$model" "$py" -m genre_jax.cli train --features "$store" \
        --run-dir "$work/runs/$model" --model "$model" --epochs "$epochs" --patience 0 \
        --no-progress "$@"
    timed "evaluate_$model" "$py" -m genre_jax.cli evaluate --run-dir "$work/runs/$model"
    cp "$work/runs/$model/summary.json" "$out/summary_$model.json"
    cp "$work/runs/$model/report.json" "$out/report_$model.json"
done
{
    printf '{"device": "%s", "tracks_per_genre": %s, "epochs": %s, "train_options": "%s"' \
        "$device" "$tracks" "$epochs" "$*"
    for name in "${!seconds[@]}"; do printf ', "%s_s": %s' "$name" "${seconds[$name]}"; done
    printf '}\n'
} >"$out/gpu_runs.json"
cat "$out/gpu_runs.json"
rm -rf "$work"
