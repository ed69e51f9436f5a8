"""genre_jax: music genre classification in JAX.

From Python, one call loads what the commands wrote (:mod:`genre_jax.api`)::

    import genre_jax
    model = genre_jax.load("runs/cnn")       # a run, an ensemble or an exported program
    model.predict("song.mp3", top_k=3)       # [{"label": "rock", "score": 0.81}, ...]

A folder of music becomes a feature store, a trained model (a registered network or pipeline,
:mod:`genre_jax.models`), and song-level evaluations and predictions, in one direction::

    audio files ──► manifest ──► split ──► segments ──► features ──► feature store
     (any format)   (datasets)  (splits)   (audio)     (features,    (store: arrays +
                                                         jitted JAX)   manifest + config hash)
                                                                            │
            ┌───────────────────────────────┬───────────────────────────────┤
            ▼                               ▼                               ▼
       network family                  pipeline family                 benchmarks
       (cnn, gru, melstat: train.py's  (svm, statsvm, musicnnsvm:      (time each path,
        pure jitted steps, Optax Adam)  sklearn on the SAME arrays)     JSON + table)
            │                               │
            └──────────► run directory ◄────┘
                         config.json, labels.json, history.json, checkpoints/ or svm.skops, plots/
                             │
                             ├──► evaluate (from the run's files alone) → reports, confusion PNGs
                             └──► predict  (any audio file → genre probabilities)

Modules, in flow order::

    genre_jax/
      settings.py      settings machinery: declared ranges, type checks, JSON, hashes, diffs
      feature_config.py FeatureConfig: how audio becomes model input
      config.py        TrainConfig = shared settings + one model section (one tree)
      experiment.py    experiment files (configs/*.json) and ensembles of them
      input_checks.py  what a train config cannot do with a store's features (before any folder)
      identity.py      a song is its decoded audio; a store's data; the one check of a run's songs
      options.py       command-line options generated from the settings dataclasses
      datasets.py      find a dataset's tracks (GTZAN layouts, any folder per genre)
      manifest.py      the manifest: a dataset's tracks and what was left out
      tables.py        FMA's tracks.csv and CSV manifests; listing_checks.py: their refusals
      synthetic.py     the built-in synthetic 10-genre dataset
      audio.py         decode any format to mono float32 at the target rate; segments
      truncation.py    warnings for cut Ogg and MP3 files
      features.py      MFCC and log-mel as pure JAX functions, matching librosa
      mel.py           the Slaney mel scale and filterbank (numpy constants)
      extraction.py    decode + segment + extract tracks (shared by prepare, store_shards, check)
      store.py         the feature store, keyed by a hash of the feature settings: open, read
      store_checks.py  validation of a store's files (JSON, arrays, digests, shard order)
      prepare.py       build a store from audio, alone or one block of tracks per process
      store_shards.py  each process's shard of a multi-host prepare
      check.py         validate a dataset folder file by file
      splits.py        the Split; song-level hold-out and k-fold, the seed's leaky split
      dataset_splits.py by artist, the dataset's own split, fault-filtered GTZAN (data/)
      store_splits.py  the split a train config names on a store; its segments as arrays
      streaming.py     a split read from the store batch by batch
      models/
        __init__.py    the registry: the only list of model names; register(), plug-ins
        spec.py        ModelSpec: what the rest of the package knows about a model
        cnn.py gru.py  the seed's CNN and GRU, layer for layer (networks)
        melstat.py     ours: residual frame encoder + statistics pooling on log-mel (network)
        layers.py      pieces shared by the networks; summary.py: statistics over time
        svm.py         the seed's SVM on the flattened segments (pipeline)
        statsvm.py     ours: RBF SVM on summary statistics (pipeline)
        musicnnsvm.py  ours: RBF SVM on embeddings of a pretrained tagger (pipeline)
        musicnn.py     the pretrained musicnn tagger in JAX; the wheel's weights, all four
        vgg.py         the wheel's VGG-like tagger in JAX (MSD_vgg, MTT_vgg)
        tagger_layers.py what the two taggers share: batch norm, convolution, patches
        musicnn_net.py ours: a tagger fine-tuned with a new head (network)
        rbf.py         RBF SVCs shared by the pipelines; the kernel matrix computed by JAX
        sklearn_io.py  skops save/load with a trusted-type list; the run's binding sidecar
      kernels/
        __init__.py    the one switch (reference | fast | auto) and the list of kernels
        ops.py         the reference ops the models call: conv block, dropout, GRU recurrence
        conv.py conv_block.py threefry.py gru.py extraction.py   the CPU kernels of those ops
      tf_checkpoint.py read a TensorFlow checkpoint without TensorFlow (musicnn's weights)
      augment.py       time flip, SpecAugment, mixup, label smoothing (pure JAX)
      parallel.py      the data mesh, batch sharding, multi-process start-up
      optimizer.py     Optax Adam, the learning-rate schedule, the pretrained layers' own rate
      step.py          the pure jitted pieces: loss, one optimiser step, one epoch, prediction
      streamed_epochs.py epochs read from the store batch by batch; checkpoints inside them
      train.py         the network family's loop: epochs, validation, early stopping, resume
      metrics.py       live metrics: metrics.jsonl line by line, TensorBoard (optional)
      binding.py       the digest that binds a checkpoint or pipeline file to the run's config
      checkpoint.py    orbax checkpoints (latest to resume, best to evaluate), bound to the run
      fit_network.py   the network family: train through train.py, save, report
      fit_pipeline.py  the pipeline family: fit once, save, report
      runner.py        a training run: run directory, dispatch by family
      resume.py        what a resumed run may change (run options, epochs) and its record
      inference.py     load a finished run from its files alone
      evaluate.py      a run scored on a store from its files alone; compare
      scoring.py       segment predictions -> songs; per-genre metrics, confusion matrices
      matching.py      which segments of a store a run is scored on (its songs, by audio)
      reports.py       report file names, headline figures, markdown reports and comparison
      report_pages.py  what report.html shows (tables, matrices, songs to hear, maps);
                       report_html.py draws it, excerpts.py cuts the audio it plays
      compare.py       models side by side and paired on the same songs; paired.py: the
                       bootstrap interval, McNemar's exact test, Holm's adjustment
      windows.py       songs scored over overlapping windows of their audio
      predict.py       genre probabilities of any audio file; segment_rows.py: streamed batches
      api.py           the Python API: load(path) -> a model that predicts paths and waveforms
      export.py        a network as one StableHLO program or ONNX graph; exported.py and
                       exported_onnx.py: their loaders (the first stand-alone)
      model_card.py    MODEL_CARD.md of runs, ensembles, crossval folders and exports
      ensemble.py      several runs as one model (mean probability), features alike or not
      embed.py         embeddings of files or a store; embedders.py: musicnn's or a run's
      embedding_cache.py embeddings cached once per store, bound to its arrays
      crossval.py      song-level (repeated) k-fold as one command; crossval_report.py: its
                       report; crossval_folds.py: where its repeats' folds are
      plots.py         training curves, confusion matrices (PNG); audio_plots.py: waveform, mel
      demo.py          the whole pipeline in one command
      cli.py           the genre-jax command: parse (cli_parser.py), hand off (cli_commands.py)
      fileio.py        atomic writes, JSON reading, run metadata
      output_dirs.py   folder markers: what a run, ensemble or crossval folder may hold
      legacy.py        readers of everything earlier versions wrote, in one place
    configs/           experiment files, one per row of the results
    benchmarks/        timing of every path against librosa, Keras and PyTorch
    experiments/       research code and unregistered models (not installed)
    scripts/           thin launchers for cluster jobs
    tests/             pytest: parity with references, golden losses, kill -9 resume

README.md has the set-up, "add a model" and the headline results; docs/ has the rest.
"""

__all__ = ["Model", "PredictError", "Prediction", "__version__", "load"]

_API = ("Model", "Prediction", "PredictError", "load")


def __getattr__(name: str):
    # Lazily, so that ``import genre_jax.config`` (which imports this package first) and the
    # CLI's help load neither JAX nor the models.
    if name in _API:
        from genre_jax import api

        return getattr(api, name)
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("genre-jax")
        except PackageNotFoundError:  # a checkout on sys.path, never installed
            return "0+unknown"
    raise AttributeError(f"module 'genre_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
