"""`evaluate`: loss and accuracy of a trained run on a dataset's test split.

`--json` prints one JSON object: loss, accuracy, samples, run, data, model, size, backend.
A run trained on either backend evaluates on either (``model.keras`` holds no backend's state).
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from pipeline.errors import UsageError, positive_int
from pipeline.runtime import backends, devices


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", type=Path, required=True, help="run directory written by `train`")
    p.add_argument("--data", type=Path, required=True, help="dataset directory; its test split is evaluated")
    p.add_argument("--samples", type=positive_int, default=None,
                   help="evaluate the first N test sequences (default: all)")
    p.add_argument("--batch-size", type=positive_int, default=256, help="sequences per evaluation batch")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    backends.add_argument(p)
    devices.add_precision_argument(p)


def load_run(run_dir: Path):
    """(model, config) of a run directory; UsageError if it or its files are missing or unreadable.

    Imports Keras: call ``backends.use`` first.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UsageError(f"--run {run_dir}: no such run directory")
    for name in ("model.keras", "config.json"):
        if not (run_dir / name).is_file():
            raise UsageError(f"--run {run_dir}: missing {name} (not a run directory written by `train`?)")
    try:
        config = json.loads((run_dir / "config.json").read_text())
        config["dataset"]["params"]["size"]
    except (ValueError, KeyError, TypeError) as e:
        raise UsageError(f"--run {run_dir}: unreadable config.json ({e})") from None
    import keras

    import pipeline.models.layers  # noqa: F401  registers the custom layers for deserialisation

    try:
        model = keras.saving.load_model(run_dir / "model.keras")
    except (ValueError, OSError, KeyError) as e:
        raise UsageError(f"--run {run_dir}: cannot load model.keras ({str(e).splitlines()[0]})") from None
    return model, config


def in_precision(model, config: dict, precision: str | None):
    """`model` computing in `precision` (None: this device's default): itself if it already does,
    else the run's model rebuilt in that precision with the same weights (variables are float32 in
    every precision)."""
    from pipeline.models.networks import build_model, precision_of

    precision = devices.default_precision() if precision is None else precision
    if precision_of(model) == precision:
        return model
    options = {k: v for k, v in config["model"]["options"].items() if k != "mixed_precision"}  # older runs
    rebuilt = build_model(config["model"]["name"], model_size(model), precision=precision,
                          jit_compile=config["model"].get("jit_compile"), packed_input=config.get("packed", False),
                          **options)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def model_size(model) -> int:
    """Frame side the model was built for: the last axis of uint8 (B, T, S, S) input, or of (B, S**3 / 8) packed."""
    unpack = next((layer for layer in model.layers if type(layer).__name__ == "UnpackFrames"), None)
    return unpack.size if unpack is not None else int(model.input_shape[-1])


def run(args) -> int:
    from pipeline.dataset.manifest import load_manifest

    manifest = load_manifest(args.data)  # DataError (exit 1) if missing or malformed
    backends.use(args.backend)
    model, config = load_run(args.run)
    from pipeline.models.networks import precision_of

    model = in_precision(model, config, args.precision)
    size = model_size(model)
    if manifest.params.size != size:
        raise UsageError(f"dataset {args.data} has size {manifest.params.size}, the model in {args.run} expects {size}")
    total = manifest.params.test_samples
    samples = total if args.samples is None else min(args.samples, total)
    packed = config.get("packed", False)  # a model trained --packed takes packed frames
    data, close = evaluation_data(args, size, samples, total, packed)
    try:
        loss, accuracy = model.evaluate(data, verbose=0, steps=math.ceil(samples / args.batch_size))
    finally:
        close()
    result = {"loss": float(loss), "accuracy": float(accuracy), "samples": samples,
              "run": str(args.run), "data": str(args.data), "model": config["model"]["name"], "size": size,
              "backend": args.backend, "precision": precision_of(model)}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"loss: {loss:.6f}, accuracy: {accuracy * 100:.3f}% on {samples} test sequences "
              f"({config['model']['name']} model, size {size})")
    return 0


def evaluation_data(args, size: int, samples: int, total: int, packed: bool):
    """(the first ``samples`` of ``total`` test sequences for ``model.evaluate``, a function that
    stops its readers) on ``args.backend``."""
    if args.backend == "jax":
        from pipeline.input.jax_feed import prefetch_to_device, stopper
        from pipeline.input.reader import batch_stream

        stream = batch_stream(args.data, "test", args.batch_size, shuffle=False, expected_size=size, packed=packed)
        feed = prefetch_to_device(first_samples(stream, samples))
        return feed, stopper(feed, stream)
    from pipeline.input.loader import make_dataset

    data = make_dataset(args.data, "test", args.batch_size, shuffle=False, expected_size=size, packed=packed)
    if samples < total:
        data = data.unbatch().take(samples).batch(args.batch_size)
    return data, lambda: None


def first_samples(batches, samples: int):
    """The first ``samples`` samples of a stream of ``(frames, labels)`` batches, in the same batches."""
    for frames, labels in batches:
        if samples <= 0:
            return
        yield frames[:samples], labels[:samples]
        samples -= len(labels)
