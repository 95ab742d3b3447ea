"""The book's generator and workflow, reproduced: rules, shapes, reproducibility."""
from __future__ import annotations

import random
import re

import numpy as np
import pytest

from pipeline.models.book_workflow import build_frames, describe_prediction, generate_examples


@pytest.fixture(scope="module")
def examples():
    return generate_examples(9, 60, random.Random(5))


def test_shapes_and_dtypes_are_the_books(examples):
    x, y = examples
    assert x.shape == (60, 9, 9, 9, 1) and x.dtype == np.float64
    assert y.shape == (60, 1)
    assert set(np.unique(x)) <= {0.0, 1.0} and set(np.unique(y)) == {0, 1}


def test_same_random_seed_gives_the_same_arrays(examples):
    x, y = generate_examples(9, 60, random.Random(5))
    np.testing.assert_array_equal(x, examples[0])
    np.testing.assert_array_equal(y, examples[1])
    assert not np.array_equal(generate_examples(9, 60, random.Random(6))[0], x)


def test_frames_obey_the_generator_rules(examples):
    x, y = examples
    frames = x[..., 0]
    size = frames.shape[1]
    for seq, right in zip(frames, y[:, 0]):
        rows = []
        for i in range(size):
            assert seq[i].sum() == i + 1  # frame i has i+1 pixels lit
            new = seq[i] - (seq[i - 1] if i else 0)
            assert new.min() == 0 and new.sum() == 1  # frame i = frame i-1 plus one pixel
            r, c = np.argwhere(new)[0]
            assert c == (i if right else size - 1 - i)
            rows.append(r)
        assert all(abs(a - b) <= 1 for a, b in zip(rows, rows[1:]))


def test_draw_order_is_the_books():
    """First the start row (randint), then the direction (random() < 0.5), then one randint per step."""
    rng = random.Random(11)
    frames, right = build_frames(6, random.Random(11))
    row = rng.randint(0, 5)
    assert right == (1 if rng.random() < 0.5 else 0)
    assert frames[0][row, 0 if right else 5] == 1
    assert frames[0].dtype == np.float64


def test_edges_use_only_in_bounds_rows():
    x, _ = generate_examples(2, 200, random.Random(0))  # every step starts at an edge
    assert (x[:, -1].sum(axis=(1, 2, 3)) == 2).all()


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="size"):
        generate_examples(1, 3, random.Random(0))
    with pytest.raises(ValueError, match="n must"):
        generate_examples(5, 0, random.Random(0))


def test_prediction_line_thresholds_at_one_half():
    assert describe_prediction(1, 0.93) == "Expected: Right, Predicted: Right"
    assert describe_prediction(0, 0.51) == "Expected: Left, Predicted: Right"
    assert describe_prediction(0, 0.5) == "Expected: Left, Predicted: Left"


def test_book_model_is_the_books():
    pytest.importorskip("keras")
    from pipeline.models.book_workflow import build_book_model

    model = build_book_model(50)
    assert model.count_params() == 240_661
    assert model.input_shape == (None, None, 50, 50, 1)
    assert [type(layer).__name__ for layer in model.layers] == ["TimeDistributed"] * 3 + ["LSTM", "Dense"]


@pytest.mark.slow
def test_run_book_workflow_at_tiny_size():
    pytest.importorskip("keras")
    from pipeline.models.book_workflow import run_book_workflow

    result = run_book_workflow(size=6, train_samples=64, test_samples=16, batch_size=32, seed=3)
    assert result["params"] == 10 + 4 * 50 * (2 * 2 * 2 + 50 + 1) + 51
    assert result["generate_s"] > 0 and result["fit_samples_per_s"] > 0
    assert 0 <= result["accuracy"] <= 1 and np.isfinite(result["loss"])
    assert re.fullmatch(r"Expected: (Right|Left), Predicted: (Right|Left)", result["prediction"])
