"""The bench's consumers: a Python loop and a tf.function pull the same batches, and each pull
returns the batch's samples."""
from __future__ import annotations

import numpy as np
import pytest

from pipeline.bench import consumers


def _dataset(batches: int = 3, batch: int = 4):
    import tensorflow as tf

    frames = np.arange(batches * batch * 8, dtype=np.uint8).reshape(batches * batch, 2, 2, 2)
    labels = np.arange(batches * batch, dtype=np.uint8)
    return tf.data.Dataset.from_tensor_slices((frames, labels)).batch(batch)


@pytest.mark.parametrize("consumer", ["python", "tf.function"])
def test_each_pull_returns_one_batch_and_the_end_of_the_data_stops_it(consumer):
    pull = consumers.puller(consumer, _dataset(batches=3, batch=4))
    assert [pull() for _ in range(3)] == [4, 4, 4]
    with pytest.raises((StopIteration, Exception)) as caught:
        pull()
    assert caught.type.__name__ in ("StopIteration", "OutOfRangeError")


def test_numpy_and_tensor_batches_are_materialized_where_a_step_reads_them():
    import tensorflow as tf

    pull = consumers.python_puller(iter([(np.zeros((2, 3), np.uint8), np.zeros(2, np.uint8)),
                                         (tf.zeros((5, 3), tf.uint8), tf.zeros(5, tf.uint8))]))
    assert (pull(), pull()) == (2, 5)


def test_an_unknown_consumer_is_refused():
    with pytest.raises(ValueError, match="unknown consumer 'eager'.*tf.function-K"):
        consumers.puller("eager", [])


def test_a_graph_pull_of_k_steps_takes_k_batches_in_one_call():
    pull = consumers.graph_puller(_dataset(batches=6, batch=4), steps=3)
    assert [pull(), pull()] == [12, 12]
    with pytest.raises(Exception) as caught:  # the six batches are spent by two calls
        pull()
    assert caught.type.__name__ == "OutOfRangeError"


def test_the_k_consumer_pulls_a_batch_per_pull_and_calls_once_per_k():
    pull = consumers.puller(consumers.STEPS_PER_CALL_CONSUMER, _dataset(batches=6, batch=4), steps_per_call=3)
    assert [pull() for _ in range(6)] == [4] * 6
    with pytest.raises(Exception) as caught:
        pull()
    assert caught.type.__name__ == "OutOfRangeError"
