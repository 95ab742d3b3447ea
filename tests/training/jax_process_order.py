"""`python tests/training/jax_process_order.py INDEX COORDINATOR`: process INDEX of 2 joins through
`pipeline.training.processes`, takes the mesh `replicas.strategy_scope` gives, hands Keras's data
layout its 8 rows (values 1000 * INDEX + 0..23) and prints whether the global batch gathered back
is the two processes' rows concatenated in process order ("order ok")."""
import os
import sys
from pathlib import Path

os.environ["KERAS_BACKEND"] = "jax"
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.training import processes, replicas  # noqa: E402

index = int(sys.argv[1])
cluster = processes.join("jax", processes.Launch(2, index, (sys.argv[2],)), None)
import keras  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402

replicas.strategy_scope("jax", 1, cluster)
rows = [np.arange(24).reshape(8, 3) + 1000 * p for p in range(2)]
layout = keras.distribution.distribution().get_data_layout(rows[index].shape).backend_layout
batch = jax.make_array_from_process_local_data(layout, rows[index])  # what Keras's JAX trainer does per batch
gathered = multihost_utils.process_allgather(batch, tiled=True)
print("order ok" if batch.shape == (16, 3) and np.array_equal(gathered, np.concatenate(rows)) else "order wrong")
