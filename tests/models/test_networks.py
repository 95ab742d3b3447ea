"""Models: the book's parameter count, equal outputs across styles, book -> fast weight transfer.

Backend-neutral: ``KERAS_BACKEND=jax pytest tests/models/test_networks.py`` runs them all on JAX.
"""
from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from pipeline.dataset.synth import SequenceSpec, generate  # noqa: E402
from pipeline.models.layers import ConvPool, LookupConvPool, ProjectedLSTM  # noqa: E402
from pipeline.models.networks import book_cnn_layers, build_model, leaf_layers, precision_of  # noqa: E402
from pipeline.models.variants import build_fast_variant  # noqa: E402
from pipeline.runtime import devices  # noqa: E402

BOOK_PARAMS_AT_50 = 240_661  # 10 (conv) + 240,600 (LSTM on 24*24*2 features) + 51 (dense)
TOLERANCE = 1e-5  # float32 sums in a different order (folded batch, fused conv/pool, hoisted projection)


def frames(size, n=4, seed=0):
    return generate(np.random.default_rng(seed), n, SequenceSpec(size)).frames


@pytest.mark.parametrize("name,options", [("book", {"style": "nested"}), ("book", {"style": "per_layer"}),
                                          ("fast", {})])
def test_parameter_count_at_size_50_is_the_books(name, options):
    assert build_model(name, 50, **options).count_params() == BOOK_PARAMS_AT_50
    assert build_fast_variant(50, cnn="keras", lstm="keras").count_params() == BOOK_PARAMS_AT_50


def test_models_take_uint8_frames():
    for name in ("book", "fast", "rowcol"):
        model = build_model(name, 8)
        assert model.inputs[0].dtype == "uint8"
        assert tuple(model.input_shape[-2:]) == (8, 8)


def test_book_styles_give_identical_outputs_for_identical_weights():
    nested = build_model("book", 12, style="nested")
    per_layer = build_model("book", 12, style="per_layer")
    per_layer.set_weights(nested.get_weights())
    x = frames(12)
    np.testing.assert_array_equal(np.asarray(nested(x)), np.asarray(per_layer(x)))


VARIANTS = [(cnn, lstm) for cnn in ("lookup", "fused", "keras") for lstm in ("projected", "keras")]


@pytest.mark.parametrize("variant", [None, *(pytest.param(v, marks=pytest.mark.slow) for v in VARIANTS)])
def test_fast_with_the_book_models_weights_gives_the_same_outputs(variant):
    """`fast` and every variant of its layers compute the book's function."""
    book = build_model("book", 50)
    if variant is None:
        fast = build_model("fast", 50, precision="float32")  # float32 on any device, as the tolerance assumes
    else:
        fast = build_fast_variant(50, cnn=variant[0], lstm=variant[1], precision="float32")
    fast.set_weights(book.get_weights())
    x = frames(50, n=3)
    np.testing.assert_allclose(np.asarray(fast(x)), np.asarray(book(x)), atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("size", [3, 5, 10, 11])
def test_conv_pool_equals_conv_maxpool_flatten(size):
    x = (np.random.default_rng(size).random((5, size, size, 1)) < 0.4).astype("float32")
    reference = keras.Sequential([keras.Input((size, size, 1)), *book_cnn_layers()])
    fused = ConvPool(2)
    fused(x)
    weights = [np.random.default_rng(1).normal(size=(2, 2, 1, 2)).astype("float32"), np.array([0.1, -0.3], "float32")]
    fused.set_weights(weights)
    reference.set_weights(weights)
    np.testing.assert_allclose(np.asarray(fused(x)), np.asarray(reference(x)), atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize("size", [3, 5, 10, 11, 50])
def test_lookup_conv_pool_equals_conv_maxpool_flatten_on_binary_frames(size):
    x = (np.random.default_rng(size).random((6, size, size)) < 0.4).astype("uint8")
    x[0] = 0
    x[1] = 1
    reference = keras.Sequential([keras.Input((size, size, 1)), *book_cnn_layers()])
    lookup = LookupConvPool(2)
    lookup(x)
    weights = [np.random.default_rng(2).normal(size=(2, 2, 1, 2)).astype("float32"), np.array([0.2, -0.1], "float32")]
    lookup.set_weights(weights)
    reference.set_weights(weights)
    expected = np.asarray(reference(x[..., None].astype("float32")))
    np.testing.assert_allclose(np.asarray(lookup(x)), expected, atol=TOLERANCE, rtol=0)


def gradients(layer, inputs) -> list[np.ndarray]:
    """Gradients of sum(sin(layer(inputs))) (a loss whose gradient differs per cell) with respect to the
    layer's trainable variables, on this process's Keras backend."""
    def loss(out):
        return keras.ops.sum(keras.ops.sin(out))

    if keras.backend.backend() == "jax":
        import jax

        other = [v.value for v in layer.non_trainable_variables]
        grads = jax.grad(lambda trainable: loss(layer.stateless_call(trainable, other, inputs)[0]))(
            [v.value for v in layer.trainable_variables])
        return [np.asarray(g) for g in grads]
    import tensorflow as tf

    with tf.GradientTape() as tape:
        value = loss(layer(inputs))
    return [g.numpy() for g in tape.gradient(value, layer.trainable_variables)]


def test_lookup_conv_pool_gradients_equal_the_book_layers():
    x = (np.random.default_rng(0).random((8, 11, 11)) < 0.3).astype("uint8")
    reference = keras.Sequential([keras.Input((11, 11, 1)), *book_cnn_layers()])
    lookup = LookupConvPool(2)
    lookup(x)
    lookup.set_weights(reference.get_weights())
    for ours, theirs in zip(gradients(lookup, x), gradients(reference, x[..., None].astype("float32"))):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-5)


def test_projected_lstm_equals_keras_lstm():
    x = np.random.default_rng(0).normal(size=(3, 7, 5)).astype("float32")
    reference, projected = keras.layers.LSTM(4), ProjectedLSTM(4)
    reference(x)
    projected(x)
    assert [w.shape for w in projected.get_weights()] == [w.shape for w in reference.get_weights()]
    np.testing.assert_allclose(projected.get_weights()[2], reference.get_weights()[2])  # unit forget bias
    projected.set_weights(reference.get_weights())
    np.testing.assert_allclose(np.asarray(projected(x)), np.asarray(reference(x)), atol=TOLERANCE, rtol=0)


def test_fast_model_survives_save_and_load(tmp_path):
    model = build_model("fast", 8)
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras")
    x = frames(8)
    np.testing.assert_array_equal(np.asarray(loaded(x)), np.asarray(model(x)))


def test_rowcol_builds_and_trains_a_step_at_tiny_size():
    s = generate(np.random.default_rng(0), 8, SequenceSpec(8))
    model = build_model("rowcol", 8, row_units=4, col_units=4, time_units=8)
    assert model.get_layer("row_lstm").input.shape[1:] == (3, 2)  # (W', C) after 2x2 conv + pool: 7 -> 3
    before = [w.copy() for w in model.get_weights()]
    loss, accuracy = model.train_on_batch(s.frames, s.labels)
    assert np.isfinite(loss) and 0 <= accuracy <= 1
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert model.predict(s.frames, verbose=0).shape == (8, 1)


def test_rowcol_backbone_rules(tmp_path):
    with pytest.raises(ValueError, match="size >= 32"):
        build_model("rowcol", 16, backbone="vgg16")
    with pytest.raises(ValueError, match="local file"):
        build_model("rowcol", 32, backbone="vgg16", backbone_weights=str(tmp_path / "none.h5"))
    with pytest.raises(ValueError, match="backbone"):
        build_model("rowcol", 32, backbone="resnet")


@pytest.mark.slow
def test_rowcol_with_frozen_vgg16_backbone_from_a_local_file(tmp_path):
    net = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    net.save_weights(tmp_path / "vgg16.weights.h5")
    model = build_model("rowcol", 32, backbone="vgg16", backbone_weights=str(tmp_path / "vgg16.weights.h5"))
    backbone = model.get_layer("vgg16")
    assert not backbone.trainable
    np.testing.assert_array_equal(backbone.get_weights()[0], net.get_weights()[0])
    s = generate(np.random.default_rng(0), 2, SequenceSpec(32))
    assert np.isfinite(model.train_on_batch(s.frames, s.labels)[0])


def test_bad_names_and_options_raise():
    with pytest.raises(ValueError, match="model must be one of"):
        build_model("lenet", 10)
    with pytest.raises(ValueError, match="style"):
        build_model("book", 10, style="sideways")
    with pytest.raises(ValueError, match="size"):
        build_model("fast", 0)
    with pytest.raises(TypeError):
        build_model("book", 10, colour=True)
    with pytest.raises(TypeError):  # layer choices are no options of the model API
        build_model("fast", 10, cnn="keras")
    with pytest.raises(ValueError, match="cnn must be one of"):
        build_fast_variant(10, cnn="dense")
    with pytest.raises(ValueError, match="lstm must be one of"):
        build_fast_variant(10, lstm="gru")


@pytest.mark.gpu
def test_fast_on_gpu_uses_cudnn_eligible_lstm_and_its_precision_default():
    """TensorFlow: a cuDNN-eligible LSTM. JAX: ProjectedLSTM (JAX's cuDNN LSTM takes float32 only)."""
    if not devices.has_gpu():
        pytest.skip("no GPU")
    model = build_model("fast", 50)
    lstm = model.get_layer("lstm")
    if keras.backend.backend() == "jax":
        assert isinstance(lstm, ProjectedLSTM)
    else:
        assert isinstance(lstm, keras.layers.LSTM) and not lstm.unroll and lstm.recurrent_dropout == 0
    assert lstm.dtype_policy.name == precision_of(model) == devices.default_precision()
    assert model.predict(frames(50, n=2), verbose=0).dtype == np.float32


def test_lookup_conv_pool_under_mixed_precision_keeps_a_float32_table():
    """float16 outputs equal to the float32 layer's to float16 rounding; the table's gradient is float32."""
    x = (np.random.default_rng(3).random((4, 11, 11)) < 0.4).astype("uint8")
    full, mixed = LookupConvPool(2), LookupConvPool(2, dtype="mixed_float16")
    full(x)
    mixed(x)
    mixed.set_weights(full.get_weights())
    out = mixed(x)
    assert keras.backend.standardize_dtype(out.dtype) == "float16"
    np.testing.assert_allclose(np.asarray(out, "float32"), np.asarray(full(x)), rtol=1e-3, atol=1e-3)
    for ours, theirs in zip(gradients(mixed, x), gradients(full, x)):
        assert ours.dtype == np.float32
        np.testing.assert_allclose(ours, theirs, rtol=1e-2, atol=1e-2)


# --- precision ------------------------------------------------------------------------------

@pytest.fixture
def gpus_of(monkeypatch):
    """Fake GPUs of the given compute capabilities (no GPU with none)."""
    def fake(*capabilities):
        found = [f"gpu{i}" for i in range(len(capabilities))]
        monkeypatch.setattr(devices, "gpus", lambda: found)
        monkeypatch.setattr(devices, "capability", lambda gpu: capabilities[found.index(gpu)])
    return fake


@pytest.mark.parametrize("capabilities, expected", [
    ((), "float32"), (((6, 1),), "float32"), (((7, 0),), "mixed_float16"), (((7, 5),), "mixed_float16"),
    (((8, 0),), "mixed_bfloat16"), (((9, 0),) * 8, "mixed_bfloat16"), (((8, 6), (7, 5)), "mixed_float16"),
    (((9, 0), (6, 0)), "float32")])
def test_default_precision_follows_the_weakest_gpu(gpus_of, capabilities, expected):
    gpus_of(*capabilities)
    assert devices.default_precision() == expected


def test_models_build_in_the_device_default_precision(gpus_of):
    gpus_of((9, 0))
    model = build_model("book", 8)
    assert precision_of(model) == "mixed_bfloat16" and keras.config.dtype_policy().name == "float32"
    gpus_of((7, 0))
    model = build_model("book", 8)
    assert precision_of(model) == "mixed_float16"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)


@pytest.mark.parametrize("name, options", [("book", {}), ("fast", {}), ("fast", {"packed_input": True}),
                                           ("rowcol", {"row_units": 4, "col_units": 4, "time_units": 8})])
@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_every_layer_computes_in_the_precision_asked_for(name, options, precision):
    """Every layer with weights but the output computes in `precision`; variables and output float32;
    float16 (and only float16) trains with loss scaling."""
    model = build_model(name, 8, precision=precision, **options)
    assert precision_of(model) == precision
    assert keras.config.dtype_policy().name == "float32"  # the global policy is left as it was

    weighted = {layer.name: layer.dtype_policy.name for layer in leaf_layers(model) if layer.weights}
    assert weighted.pop("dense") == "float32" and set(weighted.values()) == {precision}
    assert {keras.backend.standardize_dtype(w.dtype) for w in model.weights} == {"float32"}
    x = np.zeros((2, 8 ** 3 // 8), "uint8") if options.get("packed_input") else frames(8, n=2)
    assert keras.backend.standardize_dtype(model(x).dtype) == "float32"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == (precision == "mixed_float16")


def test_an_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision must be one of"):
        build_model("book", 8, precision="float16")
