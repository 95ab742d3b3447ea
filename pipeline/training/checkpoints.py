"""A training run's checkpoints: everything `train --resume` needs to go on at the exact next sample.

    RUN/checkpoints/step-000000120/variables.npz   model weights (all of them, trainable or not, in
                                                   `model.weights` order), optimizer variables and
                                                   the running epoch's metric accumulators
    RUN/checkpoints/step-000000120/state.json      step (optimizer steps taken, which is the input
                                                   stream's next global batch), epoch, the finished
                                                   epochs' history, fit seconds so far, random state

A checkpoint is written under a `.partial-...` name and renamed whole into place, and only then
are older checkpoints removed, so a kill at any moment leaves the last complete checkpoint (and
perhaps a partial one, which `latest` ignores and `discard_partial` removes).

The input needs no state of its own: the loaders' order is a pure function of (seed, epoch), so
`start_step=step` resumes it (`pipeline.input.reader.batch_stream`, `pipeline.input.loader.make_dataset`).
"""
from __future__ import annotations

import json
import os
import random
import shutil
import time
from pathlib import Path

import numpy as np

CHECKPOINTS = "checkpoints"
PREFIX, PARTIAL = "step-", ".partial-"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def random_state() -> dict:
    """Python's and NumPy's global random states, JSON-able."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)],
            "python": [version, list(internal), gauss_next]}


def set_random_state(state: dict) -> None:
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _variable_groups(model) -> dict[str, list]:
    return {"weights": list(model.weights), "optimizer": list(model.optimizer.variables),
            "metrics": list(model.metrics_variables)}


def save(run: Path, model, state: dict) -> Path:
    """Write checkpoint `state["step"]` of `model` (built, compiled, trained at least one step)
    atomically; then remove the older ones. Returns its directory."""
    root = Path(run) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{state['step']:09d}"
    if final.exists():  # an epoch's end that falls on a K-th step: already saved
        return final
    partial = root / f"{PARTIAL}{state['step']:09d}-{os.getpid()}"
    partial.mkdir()
    from keras import ops

    arrays = {f"{group}/{i}": ops.convert_to_numpy(v)  # mirrored over devices too
              for group, variables in _variable_groups(model).items() for i, v in enumerate(variables)}
    with open(partial / "variables.npz", "wb") as f:
        np.savez(f, **arrays)
        f.flush()
        os.fsync(f.fileno())
    with open(partial / "state.json", "w") as f:
        f.write(json.dumps({**state, "random": random_state()}) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.rename(partial, final)
    _fsync(root)
    for old in complete(run):
        if old != final:
            shutil.rmtree(old)
    return final


def complete(run: Path) -> list[Path]:
    """The run's complete checkpoints, oldest first."""
    root = Path(run) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith(PREFIX) and (p / "state.json").is_file())


def latest(run: Path) -> Path | None:
    done = complete(run)
    return done[-1] if done else None


def discard_partial(run: Path) -> None:
    """Remove checkpoints a kill left half-written (only the `.partial-` directories `save` makes)."""
    root = Path(run) / CHECKPOINTS
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(PARTIAL) and p.is_dir():
                shutil.rmtree(p)


def clear(run: Path) -> None:
    """Remove every checkpoint of the run, complete or partial."""
    discard_partial(run)
    for p in complete(run):
        shutil.rmtree(p)


def restore(checkpoint: Path, model) -> dict:
    """Load `checkpoint` into `model` (built and compiled as the run built it) and the global random
    state; returns its state (without the random state)."""
    state = json.loads((checkpoint / "state.json").read_text())
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    with np.load(checkpoint / "variables.npz") as stored:
        for group, variables in _variable_groups(model).items():
            if group == "metrics":
                continue  # assigned when the resumed epoch begins (`ResumeMetrics`): fit resets them first
            if sum(k.startswith(f"{group}/") for k in stored.files) != len(variables):
                raise ValueError(f"{checkpoint}: holds a different model's {group} than this run builds")
            for i, v in enumerate(variables):
                v.assign(stored[f"{group}/{i}"])
        state["metrics"] = [stored[f"metrics/{i}"] for i in range(sum(k.startswith("metrics/") for k in stored.files))]
    if len(model.metrics_variables) != len(state["metrics"]):
        _build_metrics(model)
    set_random_state(state.pop("random"))
    return state


def _build_metrics(model) -> None:
    """Build the compiled metrics' variables now, so that a resumed epoch's running means can be
    put back when it begins. Keras builds them at its first trace of the train step under
    TensorFlow without a strategy (under JAX or a strategy, before the first epoch begins); its
    own `_symbolic_build`, on one symbolic batch, is what builds them there."""
    x = np.zeros((1, *model.inputs[0].shape[1:]), model.inputs[0].dtype)
    model._symbolic_build(data_batch=(x, np.zeros((1,), np.uint8)))


def callback(run: Path, every: int | None, steps_per_epoch: int, state: dict):
    """A Keras callback that checkpoints `run` every `every` steps (None: never mid-epoch) and at each
    epoch's end, going on from `state` (`restore`'s, or a fresh run's: step 0, no history). It
    keeps the finished epochs' logs (`.history`, a list of dicts) and the fit time (`.fit_seconds`)."""
    import keras

    class Checkpoints(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.step, self.history = state["step"], list(state["history"])
            self.fit_seconds = state["fit_seconds"]
            # a mid-epoch checkpoint's running means go on in its epoch; an epoch's end starts afresh
            self._metrics = state["metrics"] if self.step % steps_per_epoch else None
            self._clock = None

        def on_train_begin(self, logs=None):
            self._clock = time.perf_counter()

        def on_train_end(self, logs=None):
            self._tick()

        def _tick(self):
            now = time.perf_counter()
            self.fit_seconds += now - self._clock
            self._clock = now

        def on_epoch_begin(self, epoch, logs=None):
            self._epoch_start = self.step
            if self._metrics is not None:  # resumed mid-epoch: the epoch's running means go on
                for v, value in zip(self.model.metrics_variables, self._metrics, strict=True):
                    v.assign(value)
                self._metrics = None

        def on_train_batch_end(self, batch, logs=None):
            # once per call: `batch` is the call's last step in this fit's epoch (several with steps_per_execution)
            self.step = self._epoch_start + batch + 1
            if every and self.step % every == 0 and self.step % steps_per_epoch:
                self._save()

        def on_epoch_end(self, epoch, logs=None):
            self.history.append({k: float(v) for k, v in (logs or {}).items()})
            self._save()

        def _save(self):
            self._tick()
            save(run, self.model, {"step": self.step, "epoch": self.step // steps_per_epoch,
                                   "history": self.history, "fit_seconds": self.fit_seconds})

    return Checkpoints()
