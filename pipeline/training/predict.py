"""`predict`: classify fresh sequences with a trained run, as the book's last step does.

Sequences come from `pipeline.dataset.synth` with the run's dataset parameters (size, variant,
square, wrap); each is printed as `Expected: Right, Predicted: Right`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.errors import UsageError, positive_int
from pipeline.runtime import backends


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", type=Path, required=True, help="run directory written by `train`")
    p.add_argument("--count", type=positive_int, default=1, help="number of fresh sequences to classify")
    p.add_argument("--seed", type=int, default=0, help="seed of the fresh sequences")
    backends.add_argument(p)


def label_name(label: int) -> str:
    return "Right" if int(label) == 1 else "Left"


def run(args) -> int:
    if args.seed < 0:
        raise UsageError(f"--seed must be non-negative, got {args.seed}")
    from pipeline.training.evaluate import load_run, model_size

    backends.use(args.backend)
    model, config = load_run(args.run)
    import numpy as np

    from pipeline.dataset.synth import SequenceSpec, generate

    params = config["dataset"]["params"]
    if params["size"] != model_size(model):
        raise UsageError(f"--run {args.run}: config.json size {params['size']} disagrees with the model's "
                         f"{model_size(model)}")
    spec = SequenceSpec(params["size"], params["variant"], params["square"] if params["variant"] == "square" else 1,
                        params["wrap"])
    sequences = generate(np.random.default_rng(args.seed), args.count, spec)
    frames = sequences.frames
    if config.get("packed", False):  # a model trained --packed takes bit-packed frames (n, S**3 / 8)
        frames = np.packbits(frames.reshape(len(frames), -1), axis=1)
    probabilities = model.predict(frames, verbose=0)[:, 0]
    for expected, p in zip(sequences.labels, probabilities):
        print(f"Expected: {label_name(expected)}, Predicted: {label_name(p > 0.5)}")
    return 0
