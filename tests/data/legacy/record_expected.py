"""How expected.json was recorded: run with the LEGACY code (commit in README.md) first on PATH.

PYTHONPATH=/tmp/legacy-src python record_expected.py RUNDIRS STORES EVALCOPY CLIP OUT COMMIT

RUNDIRS: the trimmed run dirs; STORES: folder holding the prepare outputs mfcc/ and logmel/;
EVALCOPY: scratch folder (each run dir is copied there, evaluate writes its reports there).
The notes and on_regenerated_store entries were added afterwards from a second run of this
script on stores rebuilt from a fresh synth folder.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import genre_jax

trimmed, stores, evalroot, clip, out = map(Path, sys.argv[1:6])
assert genre_jax.__file__.startswith("/tmp/legacy-src/"), genre_jax.__file__
from genre_jax.fileio import read_json  # noqa: E402
from genre_jax.inference import load_predictor  # noqa: E402
from genre_jax.matching import select_segments  # noqa: E402
from genre_jax.store import FeatureStore, resolve_store  # noqa: E402

RUNS = {
    "svm": "mfcc",
    "cnn": "mfcc",
    "gru": "mfcc",
    "statsvm": "logmel",
    "melstat": "logmel",
    "crossval-svm/fold-0": "mfcc",
    "crossval-svm/fold-1": "mfcc",
}
STORE_KEYS = ("feature_hash", "data_fingerprint", "segments", "tracks_used")


def cli(*args):
    command = [sys.executable, "-m", "genre_jax.cli", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, cwd="/tmp/legacy-src")
    if done.returncode:
        raise SystemExit(f"{args}: rc {done.returncode}\n{done.stdout}\n{done.stderr}")
    return done.stdout


result = {"legacy_commit": sys.argv[6], "stores": {}, "runs": {}}
for name in ("mfcc", "logmel"):
    folder = Path(resolve_store(stores / name))
    meta = read_json(folder / "store.json")
    keys = (*STORE_KEYS, "feature_config", "sha256")
    result["stores"][name] = {**{k: meta[k] for k in keys}, "folder": folder.name}

shutil.rmtree(evalroot, ignore_errors=True)
for run, kind in RUNS.items():
    copy = evalroot / run
    copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(trimmed / run, copy, symlinks=True)
    store = stores / kind
    text = cli("evaluate", "--run-dir", copy, "--features", store, "--split", "test")
    report_file = Path(
        [line for line in text.splitlines() if line.startswith("Wrote ")][-1].split()[1]
    )
    report = json.loads(report_file.read_text())
    predicted = json.loads(cli("predict", clip, "--run-dir", copy, "--json"))
    # Per-segment probabilities of the test segments (not in the report), as evaluate gets them.
    predictor = load_predictor(copy)
    opened = FeatureStore.open(resolve_store(store))
    index = np.asarray(select_segments(opened, read_json(copy / "config.json"), "test", copy).index)
    x = np.asarray(opened.features[index])
    probabilities = np.asarray(predictor.predict_proba(x), np.float64)
    result["runs"][run] = {
        "store": kind,
        "model": report["model"],
        "report_file": report_file.name,
        "report": {k: v for k, v in report.items() if k not in ("run", "store")},
        "test_segment_index": index.tolist(),
        "test_segment_tracks": np.asarray(opened.tracks[index]).tolist(),
        "test_segment_probabilities": probabilities.tolist(),
        "test_segment_predicted": np.asarray(predictor.predict(x, probabilities)).tolist(),
        "predict": [{k: v for k, v in p.items() if k != "path"} for p in predicted],
    }

out.write_text(json.dumps(result, indent=1) + "\n")
