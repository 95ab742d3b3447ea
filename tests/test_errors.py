"""`data_error_in`: the one-line message of a DataError however it reached the command line."""
from __future__ import annotations

from pipeline.errors import DataError, data_error_in


class OpError(Exception):
    """Stands for a tf.errors.OpError: only its text matters here."""


def test_a_data_error_itself_or_behind_another():
    assert data_error_in(DataError("d/train-00000.h5: truncated")) == "d/train-00000.h5: truncated"
    try:
        try:
            raise DataError("d/x.h5: corrupt")
        except DataError as e:
            raise RuntimeError("fit failed") from e
    except RuntimeError as outer:
        assert data_error_in(outer) == "d/x.h5: corrupt"


def test_a_data_error_carried_out_of_a_tf_data_pipeline():
    core = OpError("{{function_node __wrapped__IteratorGetNext}} pipeline.errors.DataError: d/train-00001.h5: corrupt "
                   "chunk at sample 8 (CRC-32 differs from the one read at open)\nTraceback (most recent call last):")
    assert data_error_in(core) == ("d/train-00001.h5: corrupt chunk at sample 8 "
                                   "(CRC-32 differs from the one read at open)")
    graph = OpError("assertion failed: [corrupt chunk in shard] [d/train-00002.h5] [at sample] [16]\n\t [[{{node x}}]]")
    assert data_error_in(graph) == ("d/train-00002.h5: corrupt chunk at sample 16 (its bytes changed since the "
                                    "dataset was opened)")
    assert data_error_in(OpError("assertion failed: [truncated shard] [d/t.h5]")) == "d/t.h5: truncated"


def test_other_errors_are_not_data_errors():
    assert data_error_in(ValueError("shapes differ")) is None
    assert data_error_in(OpError("Resource exhausted: OOM")) is None
