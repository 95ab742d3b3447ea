"""`train`: fit a CNN-LSTM model on a dataset's train split; write a run directory.

A run directory holds:

* ``model.keras``  the trained model (Keras 3 format; custom layers live in pipeline.models.layers),
* ``config.json``  everything that produced it: model name and options, the dataset's
  parameters (size, variant, wrap, ...) and manifest hash, batch size, epochs, steps,
  seed, device and library versions,
* ``history.json`` per-epoch loss/accuracy (with ``--validation``, ``val_loss``/``val_accuracy`` on the
  whole test split after each epoch) and the wall time of ``model.fit``.

``--backend tensorflow`` feeds ``model.fit`` from ``pipeline.input.loader.make_dataset`` (tf.data), one
pass over the split per epoch. ``--backend jax`` feeds it NumPy batches from
``pipeline.input.reader.batch_stream`` through ``pipeline.input.jax_feed.prefetch_to_device``, and never imports
TensorFlow; its batches run on across epoch boundaries, so an epoch is ceil(samples / batch) full batches.
``--devices N`` trains one replica per device (`pipeline.training.replicas`); ``--batch-size`` is the global batch.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

from pipeline.errors import UsageError, positive_int
from pipeline.runtime import backends, devices

MODEL_CHOICES = ("book", "fast", "rowcol")
RUN_FILES = ("model.keras", "config.json", "history.json")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, required=True, help="dataset directory (made by `generate`)")
    p.add_argument("--model", default="fast", choices=MODEL_CHOICES,
                   help="book: the book's TimeDistributed network; fast: same maths, time folded into the batch; "
                        "rowcol: row/column LSTMs over each frame's feature map")
    p.add_argument("--batch-size", type=positive_int, default=32,
                   help="sequences per training step: the global batch, split evenly over --devices")
    p.add_argument("--devices", type=positive_int, default=None,
                   help="devices to train on, one model replica each (default: every visible GPU; 1 on a CPU). "
                        "JAX: keras.distribution.DataParallel; TensorFlow: MirroredStrategy, over logical CPU "
                        "devices where there is no GPU")
    p.add_argument("--epochs", type=positive_int, default=1, help="passes over the train split (or of --steps steps)")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="steps per epoch, repeating the split as needed; None means one pass over the split")
    p.add_argument("--seed", type=int, default=0, help="seeds weight initialisation and shuffling")
    p.add_argument("--shuffle-window", type=positive_int, default=None,
                   help="samples the loader permutes together (default: the whole chunks in 48 MiB of stored rows)")
    p.add_argument("--packed", action=argparse.BooleanOptionalAction, default=None,
                   help="stream bit-packed frames and unpack them inside the model (default: on with a GPU, "
                        "for nbit-gzip datasets of even size)")
    p.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--validation", action="store_true",
                   help="evaluate the whole test split after each epoch (val_loss, val_accuracy in history.json)")
    p.add_argument("--out", type=Path, default=None,
                   help="run directory to write (default: runs/MODEL-sSIZE-seedSEED)")
    p.add_argument("--force", action="store_true", help="overwrite a run directory that already holds a model")
    p.add_argument("--style", default="per_layer", choices=("per_layer", "nested"),
                   help="book model only: TimeDistributed around each CNN layer or around one CNN sub-model")
    p.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None,
                   help="XLA-compile the train step; None means the model's default "
                        "(pipeline.models.networks.build_model): fast on XLA (Keras 'auto' on GPU), book and rowcol"
                        " off on TensorFlow and on under JAX")
    p.add_argument("--backbone", default="book", choices=("book", "vgg16", "mobilenetv2"),
                   help="rowcol model only: per-frame CNN (keras.applications backbones need size >= 32)")
    p.add_argument("--backbone-weights", default=None,
                   help="rowcol model only: local weights file for the backbone (frozen); never downloaded")
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2), help="Keras progress output")
    backends.add_argument(p)
    devices.add_precision_argument(p)


def model_options(args) -> dict:
    """The builder options that the chosen model accepts; UsageError for options of another model."""
    if args.model != "rowcol" and args.backbone_weights is not None:
        raise UsageError("--backbone-weights applies to --model rowcol only")
    if args.model == "book":
        return {"style": args.style}
    if args.model == "fast":
        return {}
    if args.backbone_weights is not None and not Path(args.backbone_weights).is_file():
        raise UsageError(f"--backbone-weights {args.backbone_weights}: no such file")
    return {"backbone": args.backbone, "backbone_weights": args.backbone_weights}


def run(args) -> int:
    if args.seed < 0:
        raise UsageError(f"--seed must be non-negative, got {args.seed}")
    if not args.learning_rate > 0:
        raise UsageError(f"--learning-rate must be positive, got {args.learning_rate}")
    from pipeline.dataset.manifest import load_manifest, manifest_sha256

    manifest = load_manifest(args.data)  # DataError (exit 1) if missing or malformed
    size = manifest.params.size
    options = model_options(args)
    out = args.out or Path("runs") / f"{args.model}-s{size}-seed{args.seed}"
    if (out / "model.keras").exists() and not args.force:
        raise UsageError(f"{out} already holds a model (use --force to overwrite)")

    backends.use(args.backend)
    import keras

    from pipeline.dataset.codecs import BIT_PACKED
    from pipeline.models.networks import build_model, precision_of
    from pipeline.runtime.environment import git_info, versions

    packable = manifest.params.codec in BIT_PACKED and size % 2 == 0
    if args.packed and not packable:
        raise UsageError(f"--packed needs an nbit-gzip dataset of even size; {args.data} is "
                         f"{manifest.params.codec}, size {size}")
    packed = packable and devices.has_gpu() if args.packed is None else args.packed
    from pipeline.training import replicas

    device_count = args.devices or replicas.default_devices()
    replicas.check(device_count, args.batch_size)
    scope, strategy = replicas.strategy_scope(args.backend, device_count)
    if args.validation and manifest.params.test_samples == 0:
        raise UsageError(f"--validation needs a test split; {args.data} was generated with --test-samples 0")
    keras.utils.set_random_seed(args.seed)
    # XLA cannot compile a step whose variables are mirrored on other devices (TensorFlow's known issue)
    if strategy is not None and args.jit:
        raise UsageError("--jit: XLA cannot compile a step mirrored over several TensorFlow devices; "
                         "use --no-jit, or --backend jax")
    jit = False if strategy is not None else args.jit
    with scope:
        model = build_model(args.model, size, precision=args.precision, learning_rate=args.learning_rate,
                            jit_compile=jit, packed_input=packed, **options)
    steps = args.steps or math.ceil(manifest.params.samples / args.batch_size)
    data, close = training_data(args, size, packed, steps, strategy)
    validation = {}
    if args.validation:
        validation = dict(validation_data=validation_data(args, size, packed),
                          validation_steps=math.ceil(manifest.params.test_samples / args.batch_size))
    start = time.perf_counter()
    try:
        history = model.fit(data, epochs=args.epochs, steps_per_epoch=steps, verbose=args.verbose, shuffle=False,
                            **validation)
    finally:
        close()
    fit_seconds = time.perf_counter() - start

    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    config = {
        "model": {"name": args.model, "options": options, "params": model.count_params(),
                  "learning_rate": args.learning_rate, "jit_compile": bool(model.jit_compile),
                  "precision": precision_of(model), "optimizer": type(model.optimizer).__name__,
                  "layers": [type(layer).__name__ for layer in model.layers]},
        "dataset": {"dir": str(Path(args.data).resolve()), "params": asdict(manifest.params),
                    "manifest_sha256": manifest_sha256(args.data)},
        "batch_size": args.batch_size, "devices": device_count,
        "batch_size_per_device": args.batch_size // device_count, "epochs": args.epochs, "steps_per_epoch": steps,
        "seed": args.seed,
        "shuffle_window": args.shuffle_window, "packed": packed,
        "device": devices.describe(), "versions": versions(), "commit": git_info()["commit"],
    }
    (out / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    seen = sum(len(v) for v in history.history.values()) // max(len(history.history), 1)
    record = {"epoch": list(range(1, seen + 1)),
              **{k: [float(x) for x in v] for k, v in history.history.items()},
              "fit_seconds": fit_seconds}
    (out / "history.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out} ({model.count_params():,} parameters, fit {fit_seconds:.1f} s)")
    return 0


def validation_data(args, size: int, packed: bool):
    """The whole test split, in stored order, once per epoch's validation (`ceil(test / batch)` batches)."""
    if args.backend == "jax":
        from pipeline.input.reader import batch_stream
        from pipeline.input.source import open_dataset

        src = open_dataset(args.data, "test", size)

        def passes():  # one pass per validation, the short last batch included
            while True:
                yield from batch_stream(None, "test", args.batch_size, shuffle=False, source=src, packed=packed,
                                        readers=1)
        return passes()
    from pipeline.input.loader import make_dataset

    return make_dataset(args.data, "test", args.batch_size, shuffle=False, expected_size=size, packed=packed)


def training_data(args, size: int, packed: bool, steps: int, strategy=None):
    """(data for ``model.fit``, a function that stops its readers) on ``args.backend``; under a
    TensorFlow ``strategy``, per-replica pipelines of endless passes (whole global batches only)."""
    if args.backend == "jax":
        from pipeline.input.jax_feed import prefetch_to_device
        from pipeline.input.reader import batch_stream

        stream = batch_stream(args.data, "train", args.batch_size, shuffle=True, seed=args.seed, epochs=None,
                              shuffle_window=args.shuffle_window, expected_size=size, packed=packed)
        return prefetch_to_device(stream), stream.close
    import tensorflow as tf

    from pipeline.input.loader import make_dataset

    if strategy is not None:
        from pipeline.training.replicas import distributed

        return distributed(strategy, lambda per_replica: make_dataset(
            args.data, "train", per_replica, shuffle=True, seed=args.seed, repeat=True, drop_remainder=True,
            shuffle_window=args.shuffle_window, expected_size=size, packed=packed), args.batch_size), lambda: None
    # One pass over the split per epoch (cardinality asserted so Keras knows the epoch length);
    # with --steps, endless reshuffled passes.
    data = make_dataset(args.data, "train", args.batch_size, shuffle=True, seed=args.seed,
                        repeat=args.steps is not None, shuffle_window=args.shuffle_window, expected_size=size,
                        packed=packed)
    if args.steps is None:
        data = data.apply(tf.data.experimental.assert_cardinality(steps))
    return data, lambda: None
