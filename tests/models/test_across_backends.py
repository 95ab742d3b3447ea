"""The models on TensorFlow and on JAX: same weights, same outputs and gradients; model.keras across backends.

This process runs Keras on TensorFlow; one subprocess with ``KERAS_BACKEND=jax`` runs this same
file as a script (``jax_side``) and exchanges weights, inputs and results through .npz files.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

OUTPUT_TOLERANCE = 1e-5  # float32, the same maths in a different op order (XLA fusions differ per backend)
GRADIENT_RTOL, GRADIENT_ATOL = 1e-4, 1e-6
SIZE = 8
CASES = {  # case name -> (model name or "fast_variant", options of build_model or build_fast_variant)
    "book_nested": ("book", {"style": "nested"}),
    "book_per_layer": ("book", {"style": "per_layer"}),
    "fast": ("fast", {}),
    "fast_fused_keras_lstm": ("fast_variant", {"cnn": "fused", "lstm": "keras"}),
    "fast_keras_layers": ("fast_variant", {"cnn": "keras", "lstm": "projected"}),
    "fast_packed": ("fast", {"packed_input": True}),
    "rowcol": ("rowcol", {"row_units": 4, "col_units": 4, "time_units": 8}),
}
SAVED = ("book_per_layer", "fast", "fast_packed", "rowcol")  # models saved under one backend, loaded under the other
QUICK = ("fast",)  # in the default suite; every case costs an XLA compilation of its gradient on each backend


def build(case: str):
    """The case's compiled model for SIZE x SIZE frames."""
    from pipeline.models.networks import build_model
    from pipeline.models.variants import build_fast_variant

    name, options = CASES[case]
    return build_fast_variant(SIZE, **options) if name == "fast_variant" else build_model(name, SIZE, **options)


def batch(case: str, n: int = 6):
    """Inputs and float labels (n, 1) for one case: frames uint8 (n, T, S, S), bit-packed for packed models."""
    from pipeline.dataset.synth import SequenceSpec, generate

    s = generate(np.random.default_rng(4), n, SequenceSpec(SIZE))
    x = s.frames
    if CASES[case][1].get("packed_input"):
        x = np.packbits(x.reshape(n, -1), axis=1)
    return x, s.labels.astype("float32")[:, None]


def outputs_and_gradients(model, x, y) -> tuple[np.ndarray, list[np.ndarray]]:
    """The model's outputs on x and the gradients of mean binary cross-entropy against y with respect
    to its trainable variables, both computed by XLA on this process's backend."""
    import keras

    if keras.backend.backend() == "jax":
        import jax

        trainable = [v.value for v in model.trainable_variables]
        other = [v.value for v in model.non_trainable_variables]

        def loss(trainable):
            out, _ = model.stateless_call(trainable, other, x, training=True)
            return keras.ops.mean(keras.losses.binary_crossentropy(y, out)), out

        (_, out), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(trainable)
        return np.asarray(out), [np.asarray(g) for g in grads]
    import tensorflow as tf

    @tf.function(jit_compile=True)
    def step(x):
        with tf.GradientTape() as tape:
            out = model(x, training=True)
            loss = keras.ops.mean(keras.losses.binary_crossentropy(y, out))
        return out, tape.gradient(loss, model.trainable_variables)

    out, grads = step(tf.constant(x))
    return out.numpy(), [g.numpy() for g in grads]


def jax_side(work: Path, cases: list[str]) -> None:
    """Under JAX, for each case: outputs and gradients with the weights in work/; for the SAVED ones,
    load the model saved under TensorFlow and predict, and build, save and predict a model of our own."""
    import keras

    assert keras.backend.backend() == "jax"
    for case in cases:
        given = np.load(work / f"{case}.in.npz")
        model = build(case)
        model.set_weights([given[f"w{i}"] for i in range(len(model.weights))])
        out, grads = outputs_and_gradients(model, given["x"], given["y"])
        np.savez(work / f"{case}.jax.npz", out=out, **{f"g{i}": g for i, g in enumerate(grads)})
    for case in (c for c in cases if c in SAVED):
        x, _ = batch(case)
        loaded = keras.saving.load_model(work / f"{case}.tf.keras")
        np.save(work / f"{case}.tf-loaded-by-jax.npy", np.asarray(loaded.predict(x, verbose=0)))
        keras.utils.set_random_seed(9)
        model = build(case)
        model.save(work / f"{case}.jax.keras")
        np.save(work / f"{case}.jax-predicted.npy", np.asarray(model.predict(x, verbose=0)))


def exchange(work: Path, cases) -> dict:
    """Write weights, inputs and saved models of ``cases`` to work/ from this process (TensorFlow), run
    ``jax_side`` on them in a subprocess; {case: (outputs, gradients)} of the TensorFlow side."""
    import keras

    assert keras.backend.backend() == "tensorflow"
    ours = {}
    for case in cases:
        keras.utils.set_random_seed(1)
        model = build(case)
        x, y = batch(case)
        np.savez(work / f"{case}.in.npz", x=x, y=y, **{f"w{i}": w for i, w in enumerate(model.get_weights())})
        ours[case] = outputs_and_gradients(model, x, y)
        if case in SAVED:
            model.save(work / f"{case}.tf.keras")
            np.save(work / f"{case}.tf-predicted.npy", model.predict(x, verbose=0))
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, __file__, str(work), *cases], env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return ours


@pytest.fixture(scope="module")
def exchanged(tmp_path_factory):
    """(work/, results) for a group of cases, each group exchanged once: exchanged("quick") or exchanged("slow")."""
    pytest.importorskip("keras")
    pytest.importorskip("jax")
    groups = {}

    def get(group: str):
        if group not in groups:
            work = tmp_path_factory.mktemp(f"backends-{group}")
            cases = [c for c in CASES if (c in QUICK) == (group == "quick")]
            groups[group] = work, exchange(work, cases)
        return groups[group]

    return get


def params(cases):
    return [pytest.param(c, marks=() if c in QUICK else pytest.mark.slow) for c in cases]


def group(case: str) -> str:
    return "quick" if case in QUICK else "slow"


@pytest.mark.parametrize("case", params(CASES))
def test_same_weights_give_the_same_outputs_and_gradients_on_tensorflow_and_jax(exchanged, case):
    work, ours = exchanged(group(case))
    theirs = np.load(work / f"{case}.jax.npz")
    out, grads = ours[case]
    np.testing.assert_allclose(theirs["out"], out, atol=OUTPUT_TOLERANCE, rtol=0)
    assert len(theirs.files) == len(grads) + 1
    for i, g in enumerate(grads):
        np.testing.assert_allclose(theirs[f"g{i}"], g, rtol=GRADIENT_RTOL, atol=GRADIENT_ATOL, err_msg=f"gradient {i}")


@pytest.mark.parametrize("case", params(SAVED))
def test_model_saved_under_one_backend_predicts_the_same_under_the_other(exchanged, case):
    import keras

    work, _ = exchanged(group(case))
    np.testing.assert_allclose(np.load(work / f"{case}.tf-loaded-by-jax.npy"),
                               np.load(work / f"{case}.tf-predicted.npy"), atol=OUTPUT_TOLERANCE, rtol=0)
    loaded = keras.saving.load_model(work / f"{case}.jax.keras")
    np.testing.assert_allclose(loaded.predict(batch(case)[0], verbose=0), np.load(work / f"{case}.jax-predicted.npy"),
                               atol=OUTPUT_TOLERANCE, rtol=0)


if __name__ == "__main__":
    jax_side(Path(sys.argv[1]), sys.argv[2:])
