"""The `accuracy` suite: held-out accuracy after a fixed budget, over several initial seeds.

As convergence benchmarks report it (MLPerf), one number per run says little: each cell
(size, variant, model) trains from `accuracy_seeds` initial seeds (`keras.utils.set_random_seed`,
which fixes the initial weights and `fit`'s shuffling), one epoch over
`accuracy_train_samples` of the train split at batch `accuracy_batch`, and is evaluated on the
whole test split. Rows: `accuracy` (the median over seeds, every seed's value in `per_seed`),
`accuracy_min`, `accuracy_max`, `loss` (median). Also on a ``wrap`` dataset (with
`accuracy_wrap`), where no single frame reveals the direction.
"""
from __future__ import annotations

from pathlib import Path

from pipeline.bench.data import read_split
from pipeline.bench.grid import Grid
from pipeline.bench.progress import log
from pipeline.bench.recorder import Recorder
from pipeline.bench.timing import Summary

METRICS = ("accuracy", "accuracy_min", "accuracy_max", "loss")


def run(rec: Recorder, grid: Grid, data: dict[tuple[int, bool], Path]) -> None:
    """data: (size, wrap) -> dataset directory."""
    import keras

    from pipeline.models.networks import build_model, precision_of
    from pipeline.runtime.devices import default_precision

    for (size, wrap), directory in data.items():
        x, y = read_split(directory, "train", limit=grid.accuracy_train_samples)
        tx, ty = read_split(directory, "test")
        for name in grid.accuracy_models:
            key = dict(size=size, batch_size=grid.accuracy_batch, feed="in-memory", precision=default_precision(),
                       variant=grid.variant + ("+wrap" if wrap else ""), train_samples=int(len(y)),
                       test_samples=int(len(ty)), epochs=1)
            with rec.cell("accuracy", name, METRICS, **key):
                accuracies, losses = [], []
                for seed in grid.accuracy_seeds:
                    log(f"accuracy {name} size={size} wrap={wrap} seed={seed}")
                    keras.utils.set_random_seed(seed)
                    model = build_model(name, size, precision=key["precision"])
                    key["precision"] = precision_of(model)
                    model.fit(x, y, batch_size=grid.accuracy_batch, epochs=1, shuffle=True, verbose=0)
                    loss, accuracy = model.evaluate(tx, ty, batch_size=max(grid.accuracy_batch, 256), verbose=0)
                    accuracies.append(float(accuracy))
                    losses.append(float(loss))
                    del model
                    keras.backend.clear_session()
                extra = dict(seeds=list(grid.accuracy_seeds), per_seed=accuracies)
                rec.add("accuracy", name, "accuracy", Summary.of(accuracies).median, **key, **extra,
                        repeat_values=accuracies)
                rec.add("accuracy", name, "accuracy_min", min(accuracies), **key, **extra)
                rec.add("accuracy", name, "accuracy_max", max(accuracies), **key, **extra)
                rec.add("accuracy", name, "loss", Summary.of(losses).median, **key, per_seed=losses,
                        seeds=list(grid.accuracy_seeds), repeat_values=losses)
