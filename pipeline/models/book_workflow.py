"""The book's CNN-LSTM workflow, reproduced as a baseline (same algorithm, our code).

What the book does (Brownlee, ch. 8):

1. ``generate_examples``: a per-pixel Python generator drawing from the ``random``
   module; frames are float64 ``(size, size)`` arrays, a sequence is ``size`` of them,
   reshaped to ``(n, size, size, size, 1)`` with labels ``(n, 1)``.
2. A ``Sequential`` model: ``TimeDistributed(Conv2D(2, (2, 2), relu))`` ->
   ``TimeDistributed(MaxPooling2D(2))`` -> ``TimeDistributed(Flatten())`` -> ``LSTM(50)``
   -> ``Dense(1, sigmoid)``; binary cross-entropy, Adam, accuracy.
3. ``model.fit`` on 5,000 fresh sequences, batch 32, 1 epoch; ``evaluate`` on 100 fresh
   ones; ``predict`` one and print ``Expected: Right, Predicted: Right``.

Differences from the book, all forced by Keras 3 or by reproducibility:
the RNG is an explicit ``random.Random`` instance instead of the module's global
one; Keras 3 has no ``predict_classes``, so the probability is thresholded at 0.5;
``input_shape=`` is given through a ``keras.Input``.
"""
from __future__ import annotations

import random
import subprocess
import sys
import time

import numpy as np

from pipeline.errors import require_positive_int

BOOK_SIZE = 50
BOOK_TRAIN_SAMPLES = 5000
BOOK_TEST_SAMPLES = 100


def next_frame(last_step: int, last_frame: np.ndarray, column: int, rng: random.Random) -> tuple[np.ndarray, int]:
    """Copy of ``last_frame`` with one more pixel lit in ``column``; its row is in-bounds of last_step +- 1."""
    lower = max(0, last_step - 1)
    upper = min(last_frame.shape[0] - 1, last_step + 1)
    step = rng.randint(lower, upper)  # inclusive at both ends, as the book's randint
    frame = last_frame.copy()
    frame[step, column] = 1
    return frame, step


def build_frames(size: int, rng: random.Random) -> tuple[list[np.ndarray], int]:
    """One sequence: ``size`` float64 frames ``(size, size)`` and right (1 = left-to-right).

    Draw order is the book's: first row, then direction, then one row per further step.
    """
    frame = np.zeros((size, size))
    step = rng.randint(0, size - 1)
    right = 1 if rng.random() < 0.5 else 0
    column = 0 if right else size - 1
    frame[step, column] = 1
    frames = [frame]
    for i in range(1, size):
        column = i if right else size - 1 - i
        frame, step = next_frame(step, frame, column, rng)
        frames.append(frame)
    return frames, right


def generate_examples(size: int, n: int, rng: random.Random | None = None) -> tuple[np.ndarray, np.ndarray]:
    """n sequences as the book feeds them: X float64 ``(n, size, size, size, 1)``, y int ``(n, 1)``.

    rng: a ``random.Random``; the same seed gives the same arrays. None draws from a fresh,
    unseeded instance (the book's behaviour).
    """
    if not isinstance(size, int) or size < 2:
        raise ValueError(f"size must be an integer >= 2, got {size!r}")
    require_positive_int("n", n)
    rng = random.Random() if rng is None else rng
    xs, ys = [], []
    for _ in range(n):
        frames, right = build_frames(size, rng)
        xs.append(frames)
        ys.append(right)
    x = np.array(xs).reshape(n, size, size, size, 1)
    y = np.array(ys).reshape(n, 1)
    return x, y


def cold_generate_seconds(size: int, n: int) -> float:
    """Seconds of one ``generate_examples(size, n)`` call in a fresh Python process, as the book's
    workflow makes it: its cost is dominated by first touching ``n * size**3`` float64 values, which
    repeated calls in one process (memory recycled by the allocator) never pay."""
    code = ("import random, time; from pipeline.models.book_workflow import generate_examples; "
            f"t = time.perf_counter(); generate_examples({size}, {n}, random.Random(0)); "
            "print(time.perf_counter() - t)")
    return float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)


def build_book_model(size: int = BOOK_SIZE):
    """The book's model exactly, on float ``(batch, time, size, size, 1)`` input; compiled as the book's."""
    import keras
    from keras import layers

    model = keras.Sequential([
        keras.Input(shape=(None, size, size, 1)),
        layers.TimeDistributed(layers.Conv2D(2, (2, 2), activation="relu")),
        layers.TimeDistributed(layers.MaxPooling2D(pool_size=(2, 2))),
        layers.TimeDistributed(layers.Flatten()),
        layers.LSTM(50),
        layers.Dense(1, activation="sigmoid"),
    ], name="book_workflow")
    model.compile(loss="binary_crossentropy", optimizer="adam", metrics=["accuracy"])
    return model


def describe_prediction(expected: int, probability: float) -> str:
    """The book's line, with ``predict_classes`` replaced by thresholding at 0.5."""
    name = {1: "Right", 0: "Left"}
    return f"Expected: {name[int(expected)]}, Predicted: {name[int(probability > 0.5)]}"


def run_book_workflow(size: int = BOOK_SIZE, train_samples: int = BOOK_TRAIN_SAMPLES,
                      test_samples: int = BOOK_TEST_SAMPLES, batch_size: int = 32, epochs: int = 1,
                      seed: int = 0, verbose: int = 0) -> dict:
    """Generate, fit, evaluate and predict as the book does; returns timings and results.

    Keys: ``generate_s`` and ``generate_samples_per_s`` (training set generation),
    ``fit_s`` and ``fit_samples_per_s`` (``model.fit`` wall time over all epochs, first
    step included, as the book's user experiences it), ``loss``, ``accuracy``
    (on ``test_samples`` fresh sequences), ``prediction`` (one line) and the arguments.
    ``seed`` seeds the ``random.Random`` generator and Keras' weight initialisation.
    """
    import keras

    for name, value in (("size", size), ("train_samples", train_samples), ("test_samples", test_samples),
                        ("batch_size", batch_size), ("epochs", epochs)):
        require_positive_int(name, value)
    rng = random.Random(seed)
    keras.utils.set_random_seed(seed)
    start = time.perf_counter()
    x, y = generate_examples(size, train_samples, rng)
    generate_s = time.perf_counter() - start
    model = build_book_model(size)
    start = time.perf_counter()
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=verbose)
    fit_s = time.perf_counter() - start
    del x, y
    x, y = generate_examples(size, test_samples, rng)
    loss, accuracy = model.evaluate(x, y, verbose=0)
    x, y = generate_examples(size, 1, rng)
    probability = float(model.predict(x, verbose=0)[0, 0])
    return {"size": size, "train_samples": train_samples, "test_samples": test_samples,
            "batch_size": batch_size, "epochs": epochs, "seed": seed, "params": model.count_params(),
            "generate_s": generate_s, "generate_samples_per_s": train_samples / generate_s,
            "fit_s": fit_s, "fit_samples_per_s": train_samples * epochs / fit_s,
            "loss": float(loss), "accuracy": float(accuracy),
            "prediction": describe_prediction(int(y[0, 0]), probability)}
