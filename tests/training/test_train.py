"""train / evaluate / predict end to end on a tiny generated dataset, and their usage errors (exit 2)."""
from __future__ import annotations

import json
import re

import pytest

pytest.importorskip("keras")

from pipeline.cli import main  # noqa: E402
from pipeline.dataset.generate import run_generation  # noqa: E402
from pipeline.dataset.manifest import DatasetParams  # noqa: E402

LINE = re.compile(r"Expected: (Right|Left), Predicted: (Right|Left)")


def status(argv) -> int:
    """Exit status of `python -m pipeline ARGV` (argparse errors exit through SystemExit)."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    """A `fast` run trained for 2 epochs of the size-8 tiny dataset."""
    run = tmp_path_factory.mktemp("runs") / "fast"
    assert main(["train", "--data", str(tiny_dataset), "--model", "fast", "--epochs", "2", "--batch-size", "16",
                 "--seed", "3", "--out", str(run), "--verbose", "0"]) == 0
    return run


@pytest.fixture(scope="module")
def other_size_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "size10"
    run_generation(out, DatasetParams(size=10, samples=32, test_samples=16, shard_size=32, chunk=8, seed=1),
                   workers=1, progress=False)
    return out


def test_train_writes_model_config_and_history(trained, tiny_params):
    assert {p.name for p in trained.iterdir()} >= {"model.keras", "config.json", "history.json"}
    config = json.loads((trained / "config.json").read_text())
    assert config["model"]["name"] == "fast" and config["model"]["params"] == 10 + 4 * 50 * (18 + 50 + 1) + 51
    params = config["dataset"]["params"]
    assert (params["size"], params["variant"], params["wrap"]) == (tiny_params.size, "trail", False)
    assert (config["batch_size"], config["epochs"], config["seed"]) == (16, 2, 3)
    assert config["steps_per_epoch"] == 6  # 96 samples / 16
    assert config["device"]["kind"] in ("cpu", "gpu")
    assert config["device"]["backend"] == "tensorflow" and config["device"]["backend_version"]
    history = json.loads((trained / "history.json").read_text())
    assert history["epoch"] == [1, 2] and len(history["loss"]) == 2 and len(history["accuracy"]) == 2


def test_train_records_what_the_layers_compute_in(trained):
    config = json.loads((trained / "config.json").read_text())
    assert (config["model"]["precision"], config["model"]["optimizer"]) == ("float32", "Adam")  # this CPU's default


def test_mixed_float16_trains_with_loss_scaling_and_evaluates_in_any_precision(tiny_dataset, tmp_path, capsys):
    run = tmp_path / "fp16"
    assert main(["train", "--data", str(tiny_dataset), "--model", "fast", "--precision", "mixed_float16",
                 "--batch-size", "16", "--steps", "3", "--out", str(run), "--verbose", "0"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert (config["model"]["precision"], config["model"]["optimizer"]) == ("mixed_float16", "LossScaleOptimizer")
    loss = json.loads((run / "history.json").read_text())["loss"]
    assert len(loss) == 1 and 0 < loss[0] < 10
    capsys.readouterr()
    results = {}
    for precision in ("mixed_float16", "float32"):
        assert main(["evaluate", "--run", str(run), "--data", str(tiny_dataset), "--precision", precision,
                     "--json"]) == 0
        results[precision] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {p: r["precision"] for p, r in results.items()} == {"mixed_float16": "mixed_float16", "float32": "float32"}
    # the same weights: float16 rounding moves the loss a little, never the whole answer
    assert abs(results["float32"]["loss"] - results["mixed_float16"]["loss"]) < 0.05


def test_evaluate_json(trained, tiny_dataset, capsys):
    assert main(["evaluate", "--run", str(trained), "--data", str(tiny_dataset), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["samples"] == 40 and 0 <= result["accuracy"] <= 1 and result["loss"] > 0
    assert main(["evaluate", "--run", str(trained), "--data", str(tiny_dataset), "--samples", "10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["samples"] == 10


def test_predict_prints_the_true_label_and_the_models_answer(trained, capsys):
    """Expected: the label of the sequence drawn from --seed; Predicted: the model's probability thresholded at 0.5."""
    import keras
    import numpy as np

    from pipeline.dataset.synth import SequenceSpec, generate

    assert main(["predict", "--run", str(trained), "--count", "6", "--seed", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 6 and all(LINE.fullmatch(line) for line in lines)
    config = json.loads((trained / "config.json").read_text())
    sequences = generate(np.random.default_rng(1), 6, SequenceSpec(config["dataset"]["params"]["size"]))
    model = keras.saving.load_model(trained / "model.keras")
    predicted = model.predict(sequences.frames, verbose=0)[:, 0] > 0.5
    name = {True: "Right", False: "Left"}
    assert lines == [f"Expected: {name[bool(y)]}, Predicted: {name[bool(p)]}"
                     for y, p in zip(sequences.labels, predicted)]


def test_validation_scores_the_whole_test_split_after_each_epoch(tiny_dataset, tmp_path, capsys):
    run = tmp_path / "validated"
    assert main(["train", "--data", str(tiny_dataset), "--epochs", "2", "--batch-size", "16", "--validation",
                 "--out", str(run), "--verbose", "0"]) == 0
    history = json.loads((run / "history.json").read_text())
    assert len(history["val_loss"]) == len(history["val_accuracy"]) == 2
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--data", str(tiny_dataset), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["samples"] == 40  # the whole test split, as validation scored it after the last epoch
    assert result["accuracy"] == pytest.approx(history["val_accuracy"][-1], abs=1e-6)
    assert result["loss"] == pytest.approx(history["val_loss"][-1], rel=1e-4)


def test_validation_needs_a_test_split(tmp_path, capsys):
    d = tmp_path / "train-only"
    run_generation(d, DatasetParams(size=8, samples=32, test_samples=0, shard_size=32, chunk=8), workers=1,
                   progress=False)
    assert status(["train", "--data", str(d), "--validation", "--out", str(tmp_path / "r")]) == 2
    assert "--validation needs a test split" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_train_book_model_with_steps(tiny_dataset, tmp_path):
    run = tmp_path / "book"
    assert main(["train", "--data", str(tiny_dataset), "--model", "book", "--steps", "2", "--epochs", "2",
                 "--out", str(run), "--verbose", "0"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["steps_per_epoch"] == 2 and "TimeDistributed" in config["model"]["layers"]


@pytest.mark.parametrize("argv,message", [
    (["train", "--model", "lenet"], "invalid choice"),
    (["train", "--batch-size", "0"], "argument --batch-size: must be a positive integer"),
    (["train", "--epochs", "-1"], "argument --epochs: must be a positive integer"),
    (["train", "--steps", "0"], "argument --steps: must be a positive integer"),
    (["train", "--shuffle-window", "0"], "argument --shuffle-window: must be a positive integer"),
    (["train", "--backend", "torch"], "invalid choice"),
    (["train", "--precision", "float16"], "invalid choice"),
    (["evaluate", "--samples", "0"], "argument --samples: must be a positive integer"),
    (["predict", "--count", "0"], "argument --count: must be a positive integer"),
])
def test_bad_numbers_and_names_exit_2(argv, message, tiny_dataset, trained, tmp_path, capsys):
    data = ["--data", str(tiny_dataset)] if argv[0] != "predict" else []
    run = ["--run", str(trained)] if argv[0] != "train" else ["--out", str(tmp_path / "r")]
    assert status([*argv, *data, *run]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_missing_run_dir_or_model_file_exit_2(tiny_dataset, tmp_path, capsys):
    assert main(["evaluate", "--run", str(tmp_path / "nope"), "--data", str(tiny_dataset)]) == 2
    assert "no such run directory" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["predict", "--run", str(tmp_path / "empty")]) == 2
    assert "missing model.keras" in capsys.readouterr().err


def test_dataset_size_differing_from_the_model_exit_2(trained, other_size_dataset, capsys):
    assert main(["evaluate", "--run", str(trained), "--data", str(other_size_dataset)]) == 2
    err = capsys.readouterr().err
    assert "has size 10" in err and "expects 8" in err and len(err.strip().splitlines()) == 1


def test_existing_run_is_not_overwritten_without_force(trained, tiny_dataset, capsys):
    before = (trained / "model.keras").read_bytes()
    assert main(["train", "--data", str(tiny_dataset), "--out", str(trained)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (trained / "model.keras").read_bytes() == before


def test_packed_training_evaluates_and_predicts_like_unpacked(trained, tiny_dataset, tmp_path, capsys):
    """--packed streams bit-packed frames into the same model behind UnpackFrames: same parameters, and the
    run's evaluate/predict feed it packed frames. On a CPU the default is unpacked."""
    assert json.loads((trained / "config.json").read_text())["packed"] is False
    run = tmp_path / "packed"
    assert main(["train", "--data", str(tiny_dataset), "--model", "fast", "--epochs", "2", "--batch-size", "16",
                 "--seed", "3", "--out", str(run), "--verbose", "0", "--packed"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["packed"] is True
    assert config["model"]["params"] == json.loads((trained / "config.json").read_text())["model"]["params"]
    capsys.readouterr()
    assert main(["evaluate", "--run", str(run), "--data", str(tiny_dataset), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["samples"] == 40 and 0 <= result["accuracy"] <= 1
    assert main(["predict", "--run", str(run), "--count", "3"]) == 0
    assert len(LINE.findall(capsys.readouterr().out)) == 3


def test_packed_needs_a_packable_dataset(other_size_dataset, tmp_path, capsys):
    odd = tmp_path / "odd"
    run_generation(odd, DatasetParams(size=9, samples=16, test_samples=8, shard_size=16, chunk=8), workers=1,
                   progress=False)
    assert status(["train", "--data", str(odd), "--model", "fast", "--packed", "--out", str(tmp_path / "r")]) == 2
    assert "--packed needs" in capsys.readouterr().err


@pytest.fixture
def damaged_after_open(tiny_dataset, tmp_path, monkeypatch):
    """A copy of the tiny dataset whose split's first shard gets a flipped byte in its second chunk
    right after the loader has opened (and checked) it: damage that only reading can find. Yields
    the directory and a list that receives the damaged shard's path."""
    import shutil

    import h5py

    from pipeline.input import loader

    d = tmp_path / "d"
    shutil.copytree(tiny_dataset, d)
    damaged = []
    real_open = loader.open_dataset

    def open_then_damage(*args, **kwargs):
        src = real_open(*args, **kwargs)
        shard = src.paths[0]
        with h5py.File(shard, "r") as f:
            info = f["frames"].id.get_chunk_info(1)
        data = bytearray(open(shard, "rb").read())
        data[info.byte_offset + info.size // 2] ^= 0xFF
        open(shard, "wb").write(bytes(data))
        damaged.append(shard)
        return src

    monkeypatch.setattr(loader, "open_dataset", open_then_damage)
    return d, damaged


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_damage_found_mid_read_is_one_line_naming_the_file_exit_1(command, damaged_after_open, trained, tmp_path,
                                                                   capsys):
    d, damaged = damaged_after_open
    argv = (["train", "--data", str(d), "--batch-size", "16", "--out", str(tmp_path / "r"), "--verbose", "0"]
            if command == "train" else ["evaluate", "--run", str(trained), "--data", str(d)])
    capsys.readouterr()
    assert main(argv) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        f"pipeline {command}: error: {damaged[0]}: corrupt chunk at sample 8 "
        "(CRC-32 differs from the one read at open)"]
    assert not (tmp_path / "r" / "model.keras").exists()
