"""`train`: fit a CNN-LSTM model on a dataset's train split; write a run directory.

A run directory holds:

* ``model.keras``  the trained model (Keras 3 format; custom layers live in pipeline.models.layers),
* ``config.json``  everything that produced it: model name and options, the dataset's
  parameters (size, variant, wrap, ...) and manifest hash, batch size, epochs, steps,
  seed, device and library versions,
* ``history.json`` per-epoch loss/accuracy (with ``--validation``, ``val_loss``/``val_accuracy`` on the
  whole test split after each epoch) and the wall time of ``model.fit``,
* ``checkpoints/`` the last checkpoint (`pipeline.training.checkpoints`), taken at each epoch's end and,
  with ``--checkpoint-every K``, every K steps; config.json is written before the first step.

Either backend reads one endless shuffled stream whose batches run on across epoch boundaries,
so an epoch is ``--steps`` or ceil(samples / batch) full batches, and step k of the run is batch
k of the stream: ``--backend tensorflow`` feeds ``model.fit`` from
``pipeline.input.loader.make_dataset`` (tf.data), ``--backend jax`` NumPy batches from
``pipeline.input.reader.batch_stream`` through ``pipeline.input.jax_feed.prefetch_to_device`` (it
never imports TensorFlow). ``--resume RUN`` goes on from RUN's last checkpoint with RUN's own
options: the stream restarts at the checkpoint's step, so the resumed run takes exactly the batches
the uninterrupted one would have taken.
``--devices N`` trains one replica per device (`pipeline.training.replicas`); ``--processes N`` (with
``--process-index`` and ``--addresses``, or ``auto``) trains on several processes, one host or many
(`pipeline.training.processes`), process 0 writing RUN. ``--batch-size`` is always the global batch;
the launch options may change at ``--resume``, so a run checkpointed on n processes goes on with m.

``--steps-per-execution K|auto`` runs K steps per call into the compiled step (`executions`): K divides
the steps of an epoch and the checkpoint interval, so step k is still batch k and every checkpoint falls
between calls; a resumed run keeps the K it started with.

Each of RUN's files is written under a hidden `.partial-` name and renamed whole, model.keras last:
a run is complete when it holds model.keras, and ``--resume`` of a complete run (a kill that came
after its last write) has nothing to do and says so, exit status 0.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
from dataclasses import asdict
from pathlib import Path

from pipeline.errors import AUTO, UsageError, positive_int, positive_int_or_auto
from pipeline.runtime import backends, devices
from pipeline.training import executions

MODEL_CHOICES = ("book", "fast", "rowcol")
RUN_FILES = ("model.keras", "config.json", "history.json")
# how a launch runs, not what the run computes: always this command line's (the run stores process 0's)
LAUNCH = ("processes", "process_index", "addresses")
# the options --resume may be given: the launch's, and these, which replace the run's own where given
RESUMABLE = ("verbose", "devices", *LAUNCH)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", type=Path, help="dataset directory (made by `generate`); required unless --resume")
    p.add_argument("--model", default="fast", choices=MODEL_CHOICES,
                   help="book: the book's TimeDistributed network; fast: same maths, time folded into the batch; "
                        "rowcol: row/column LSTMs over each frame's feature map")
    p.add_argument("--batch-size", type=positive_int, default=32,
                   help="sequences per training step: the global batch, split evenly over --processes x --devices")
    p.add_argument("--devices", type=positive_int, default=None,
                   help="devices each process trains on, one model replica each (default: every GPU it sees; 1 on "
                        "a CPU). "
                        "JAX: keras.distribution.DataParallel; TensorFlow: MirroredStrategy, over logical CPU "
                        "devices where there is no GPU")
    p.add_argument("--epochs", type=positive_int, default=1, help="passes over the train split (or of --steps steps)")
    p.add_argument("--steps", type=positive_int, default=None,
                   help="steps per epoch, repeating the split as needed; None means one pass over the split")
    p.add_argument("--seed", type=int, default=0, help="seeds weight initialisation and shuffling")
    p.add_argument("--shuffle-window", type=positive_int, default=None,
                   help="samples the loader permutes together (default: the whole chunks in 48 MiB of stored rows)")
    p.add_argument("--packed", action=argparse.BooleanOptionalAction, default=None,
                   help="stream bit-packed frames and unpack them inside the model (default: on with a GPU, "
                        "for nbit-gzip datasets of even size)")
    p.add_argument("--learning-rate", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--validation", action="store_true",
                   help="evaluate the whole test split after each epoch (val_loss, val_accuracy in history.json)")
    p.add_argument("--out", type=Path, default=None,
                   help="run directory to write (default: runs/MODEL-sSIZE-seedSEED)")
    p.add_argument("--force", action="store_true", help="overwrite a run directory that already holds a model")
    p.add_argument("--checkpoint-every", type=positive_int, default=None, metavar="K",
                   help="also checkpoint every K steps (always at each epoch's end): model, optimizer, "
                        "input position and random state, written atomically under RUN/checkpoints")
    p.add_argument("--steps-per-execution", type=positive_int_or_auto, default=1, metavar="K|auto",
                   help="training steps per call into the compiled step, so that the framework's cost per call is "
                        "paid once per K steps; K must divide the steps of an epoch and --checkpoint-every. auto: "
                        "measured on a repeated batch, the smallest K whose per-call cost is under 5%% of the K "
                        "steps (one process only)")
    p.add_argument("--resume", type=Path, default=None, metavar="RUN",
                   help="go on from RUN's last checkpoint at the exact next sample, with RUN's own options "
                        "(only --verbose, --devices and the launch options --processes, --process-index, "
                        "--addresses may be given beside it: they are this launch's)")
    p.add_argument("--style", default="per_layer", choices=("per_layer", "nested"),
                   help="book model only: TimeDistributed around each CNN layer or around one CNN sub-model")
    p.add_argument("--jit", action=argparse.BooleanOptionalAction, default=None,
                   help="XLA-compile the train step; None means the model's default "
                        "(pipeline.models.networks.build_model): fast on XLA (Keras 'auto' on GPU), book and rowcol"
                        " off on TensorFlow and on under JAX")
    p.add_argument("--backbone", default="book", choices=("book", "vgg16", "mobilenetv2"),
                   help="rowcol model only: per-frame CNN (keras.applications backbones need size >= 32)")
    p.add_argument("--backbone-weights", default=None,
                   help="rowcol model only: local weights file for the backbone (frozen); never downloaded")
    p.add_argument("--verbose", type=int, default=1, choices=(0, 1, 2), help="Keras progress output")
    backends.add_argument(p)
    devices.add_precision_argument(p)
    from pipeline.training import processes

    processes.add_arguments(p)


def model_options(args) -> dict:
    """The builder options that the chosen model accepts; UsageError for options of another model."""
    if args.model != "rowcol" and args.backbone_weights is not None:
        raise UsageError("--backbone-weights applies to --model rowcol only")
    if args.model == "book":
        return {"style": args.style}
    if args.model == "fast":
        return {}
    if args.backbone_weights is not None and not Path(args.backbone_weights).is_file():
        raise UsageError(f"--backbone-weights {args.backbone_weights}: no such file")
    return {"backbone": args.backbone, "backbone_weights": args.backbone_weights}


def stored_options(args) -> dict:
    """`args` as config.json keeps them, JSON-able, for `--resume`."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
            if k not in ("command", "resume")}


def resumed_args(args) -> argparse.Namespace:
    """The options RUN (``args.resume``) was started with; UsageError for any other option given."""
    run_dir = args.resume
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise UsageError(f"--resume {run_dir}: no such run (no config.json)")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    defaults = vars(parser.parse_args([]))
    given = [k for k, v in vars(args).items() if k in defaults and k not in (*RESUMABLE, "resume")
             and v != defaults[k]]
    if given:
        raise UsageError(f"--resume takes the run's own options; drop --{given[0].replace('_', '-')}")
    stored = json.loads(config_path.read_text())["args"]
    launch = {k: getattr(args, k) for k in LAUNCH}
    if args.devices is not None:
        launch["devices"] = args.devices
    resumed = argparse.Namespace(**{**defaults, **stored, **launch, "verbose": args.verbose, "resume": run_dir,
                                    "command": "train", "force": False})
    for k in ("data", "out"):
        resumed.__dict__[k] = Path(stored[k])
    return resumed


def run(args) -> int:
    if args.resume is not None:
        args = resumed_args(args)
        if (args.resume / "model.keras").exists():
            print(f"{args.resume}: complete (it holds model.keras), nothing to resume")
            return 0
    elif args.data is None:
        raise UsageError("--data is required (or --resume RUN)")
    if args.seed < 0:
        raise UsageError(f"--seed must be non-negative, got {args.seed}")
    if not args.learning_rate > 0:
        raise UsageError(f"--learning-rate must be positive, got {args.learning_rate}")
    from pipeline.dataset.manifest import load_manifest, manifest_sha256

    manifest = load_manifest(args.data)  # DataError (exit 1) if missing or malformed
    size = manifest.params.size
    options = model_options(args)
    out = args.out or Path("runs") / f"{args.model}-s{size}-seed{args.seed}"
    args.out = out
    if args.resume is None and not args.force:
        if (out / "model.keras").exists():
            raise UsageError(f"{out} already holds a model (use --force to overwrite)")
        if (out / "config.json").exists():
            raise UsageError(f"{out} holds an unfinished run: --resume {out}, or --force to start it afresh")
    from pipeline.training import processes

    spec = processes.launch(args)
    if args.validation and not spec.single:
        raise UsageError("--validation scores the test split on one process; drop it beside --processes")
    if args.steps_per_execution == AUTO and not spec.single:  # each process would measure its own
        raise UsageError("--steps-per-execution auto measures on one process; give K beside --processes")

    backends.use(args.backend)
    # every check above ran on every process before any of them joins, and so before the chief writes
    cluster = processes.join(args.backend, spec, args.devices)
    cluster.barrier()
    import keras

    from pipeline.dataset.codecs import BIT_PACKED
    from pipeline.models.networks import build_model, precision_of
    from pipeline.runtime.environment import git_info, versions
    from pipeline.training import checkpoints

    packable = manifest.params.codec in BIT_PACKED and size % 2 == 0
    if args.packed and not packable:
        raise UsageError(f"--packed needs an nbit-gzip dataset of even size; {args.data} is "
                         f"{manifest.params.codec}, size {size}")
    packed = packable and devices.has_gpu() if args.packed is None else args.packed
    args.packed = packed  # a resumed run streams what this one streams, whatever the machine
    from pipeline.training import replicas

    device_count = args.devices or replicas.default_devices()
    replicas.check(device_count, args.batch_size, cluster.count)
    scope, strategy = replicas.strategy_scope(args.backend, device_count, cluster)
    if args.validation and manifest.params.test_samples == 0:
        raise UsageError(f"--validation needs a test split; {args.data} was generated with --test-samples 0")
    keras.utils.set_random_seed(args.seed)
    # XLA cannot compile a step whose variables are mirrored on other devices (TensorFlow's known issue)
    if strategy is not None and args.jit:
        raise UsageError("--jit: XLA cannot compile a step mirrored over several TensorFlow devices; "
                         "use --no-jit, or --backend jax")
    jit = False if strategy is not None else args.jit
    with scope:
        model = build_model(args.model, size, precision=args.precision, learning_rate=args.learning_rate,
                            jit_compile=jit, packed_input=packed, **options)
    if cluster.strategy is not None:
        replicas.fit_on_workers(model)
    steps = args.steps or math.ceil(manifest.params.samples / args.batch_size)
    per_call = steps_per_execution(args, model, steps, size, packed)
    config = {
        "model": {"name": args.model, "options": options, "params": model.count_params(),
                  "learning_rate": args.learning_rate, "jit_compile": bool(model.jit_compile),
                  "precision": precision_of(model), "optimizer": type(model.optimizer).__name__,
                  "layers": [type(layer).__name__ for layer in model.layers]},
        "dataset": {"dir": str(Path(args.data).resolve()), "params": asdict(manifest.params),
                    "manifest_sha256": manifest_sha256(args.data)},
        "batch_size": args.batch_size, "processes": cluster.count, "devices": device_count,
        "batch_size_per_device": args.batch_size // (device_count * cluster.count), "epochs": args.epochs,
        "steps_per_epoch": steps, "steps_per_execution": per_call,
        "seed": args.seed,
        "shuffle_window": args.shuffle_window, "packed": packed, "checkpoint_every": args.checkpoint_every,
        "device": devices.describe(), "versions": versions(), "commit": git_info()["commit"],
        "args": stored_options(args),
    }
    state = {"step": 0, "history": [], "fit_seconds": 0.0, "metrics": None}
    writes = cluster.writes(out)  # RUN on the chief; the others save as it does, privately
    if args.resume is not None:
        if cluster.chief:
            checkpoints.discard_partial(out)
            discard_partial_files(out)
        last = checkpoints.latest(out)  # every process reads it
        if last is not None:
            with strategy.scope() if strategy is not None else contextlib.nullcontext():  # its slots mirrored too
                state = checkpoints.restore(last, model)
        if cluster.chief:
            print(f"resuming {out} at step {state['step']} of {args.epochs * steps}")
    elif cluster.chief:
        out.mkdir(parents=True, exist_ok=True)
        checkpoints.clear(out)  # an earlier run's, under --force: never resume into it
        for name in RUN_FILES:  # nor take its model.keras, which marks a run complete, for this one's
            (out / name).unlink(missing_ok=True)
    if cluster.chief:
        write_atomically(out / "config.json", json.dumps(config, indent=1) + "\n")

    saver = checkpoints.callback(writes, args.checkpoint_every, steps, state)
    callbacks = [saver]
    if args.validation:  # before the saver, which records the epoch's logs
        callbacks.insert(0, validation_callback(args, size, packed, manifest.params.test_samples))
    for first_epoch, last_epoch, epoch_steps in segments(state["step"], steps, args.epochs):
        data, close = training_data(args, size, packed, first_epoch * steps + (steps - epoch_steps), strategy,
                                    cluster.count)
        try:
            model.fit(data, initial_epoch=first_epoch, epochs=last_epoch, steps_per_epoch=epoch_steps,
                      verbose=args.verbose if cluster.chief else 0, shuffle=False, callbacks=callbacks)
        finally:
            close()

    if cluster.chief:
        history = saver.history
        record = {"epoch": list(range(1, len(history) + 1)),
                  **{k: [float(h[k]) for h in history] for k in (history[0] if history else {})},
                  "fit_seconds": saver.fit_seconds}
        write_atomically(out / "history.json", json.dumps(record, indent=1) + "\n")
    partial = partial_path(writes / "model.keras")
    model.save(partial)  # every process saves (Keras's multi-worker saving); the chief's is RUN's
    os.replace(partial, writes / "model.keras")  # last: it marks the run complete
    if not cluster.chief:
        return 0
    print(f"wrote {out} ({model.count_params():,} parameters, fit {saver.fit_seconds:.1f} s)")
    return 0


def partial_path(path: Path) -> Path:
    """Where this process writes `path` before renaming it into place: a hidden name that keeps the
    suffix (Keras saves a model only under a `.keras` name)."""
    return path.with_name(f".{path.name}.partial-{os.getpid()}{path.suffix}")


def write_atomically(path: Path, text: str) -> None:
    """`path` holds `text`, or what it held before: the other processes of a resumed run may be reading it."""
    partial = partial_path(path)
    partial.write_text(text)
    os.replace(partial, path)


def discard_partial_files(run: Path) -> None:
    """Remove the RUN_FILES a kill left under their `partial_path` names (no other file of RUN)."""
    for name in RUN_FILES:
        pattern = re.compile(rf"\.{re.escape(name)}\.partial-\d+{re.escape(Path(name).suffix)}")
        for p in run.glob(f".{name}.partial-*"):
            if pattern.fullmatch(p.name):
                p.unlink(missing_ok=True)


def steps_per_execution(args, model, steps: int, size: int, packed: bool) -> dict:
    """Set `model` to run K steps per call, K as `--steps-per-execution` asks (a resumed run keeps its own);
    what config.json records: {"k", "asked", and for `auto` the measured "call_s" and "step_s"}."""
    import numpy as np

    asked = args.steps_per_execution
    if args.resume is not None:
        kept = json.loads((args.resume / "config.json").read_text()).get("steps_per_execution") or {"k": 1}
        executions.set_steps_per_execution(model, kept["k"])
        return kept
    if asked != AUTO:
        executions.set_steps_per_execution(model, executions.check(asked, steps, args.checkpoint_every))
        return {"k": asked, "asked": asked}
    shape = (args.batch_size, size ** 3 // 8) if packed else (args.batch_size, size, size, size)
    batch = (np.zeros(shape, np.uint8), np.zeros((args.batch_size,), np.uint8))
    k, call_s, step_s = executions.choose_and_set(model, batch, executions.granularity(steps, args.checkpoint_every))
    if args.verbose:
        print(f"steps per execution: {k} (a call costs {call_s * 1e3:.2f} ms beside {step_s * 1e3:.2f} ms a step)")
    return {"k": k, "asked": asked, "call_s": call_s, "step_s": step_s}


def segments(step: int, steps: int, epochs: int) -> list[tuple[int, int, int]]:
    """The `model.fit` calls that take a run from global step `step` to its end, as (initial_epoch,
    epochs, steps_per_epoch): the rest of a part-done epoch on its own, then the whole ones."""
    epoch, done = divmod(step, steps)
    parts = []
    if done:
        parts.append((epoch, epoch + 1, steps - done))
        epoch += 1
    if epoch < epochs:
        parts.append((epoch, epochs, steps))
    return parts


def validation_callback(args, size: int, packed: bool, samples: int):
    """A Keras callback that scores the whole test split, in stored order, after each epoch, into the
    epoch's logs as ``val_loss`` and ``val_accuracy``. Each score reads a fresh one-pass stream: fit's
    own validation keeps one iterator across epochs, which (Keras's JAX feed prefetching ahead) would
    start each later score a few batches into the next pass."""
    import keras

    steps = math.ceil(samples / args.batch_size)

    class Validation(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            scores = self.model.evaluate(validation_data(args, size, packed), steps=steps, verbose=0,
                                         return_dict=True)
            if logs is not None:
                logs.update({f"val_{k}": float(v) for k, v in scores.items()})

    return Validation()


def validation_data(args, size: int, packed: bool):
    """One pass over the whole test split, in stored order: `ceil(test / batch)` batches, the short
    last one included."""
    if args.backend == "jax":
        from pipeline.input.reader import batch_stream

        def one_pass():  # a generator: what Keras takes from Python under JAX
            yield from batch_stream(args.data, "test", args.batch_size, shuffle=False, packed=packed, readers=1,
                                    expected_size=size)
        return one_pass()
    from pipeline.input.loader import make_dataset

    return make_dataset(args.data, "test", args.batch_size, shuffle=False, expected_size=size, packed=packed)


def training_data(args, size: int, packed: bool, start_step: int, strategy=None, processes: int = 1):
    """(data for ``model.fit``, a function that stops its readers) on ``args.backend``: the endless
    shuffled stream from global step `start_step` on, this process's rows of each global batch where
    there are several `processes`; under a TensorFlow ``strategy``, one pipeline per process, cut
    into per-replica batches."""
    if args.backend == "jax":
        from pipeline.input.jax_feed import prefetch_to_device, stopper
        from pipeline.input.reader import batch_stream
        from pipeline.input.sharding import jax_shard

        shard_index, shard_count = jax_shard() if processes > 1 else (0, 1)
        stream = batch_stream(args.data, "train", args.batch_size, shuffle=True, seed=args.seed, epochs=None,
                              shuffle_window=args.shuffle_window, expected_size=size, packed=packed,
                              start_step=start_step, shard_index=shard_index, shard_count=shard_count)
        if processes > 1:  # NumPy, as a generator (what Keras takes): Keras makes global batches of the parts
            return (batch for batch in stream), stream.close
        feed = prefetch_to_device(stream)
        return feed, stopper(feed, stream)
    from pipeline.input.loader import make_dataset, prefetch_ahead

    if strategy is not None:
        from pipeline.input.sharding import input_context_shard
        from pipeline.training.replicas import distributed

        def per_process(context):
            shard_index, shard_count = input_context_shard(context)
            ds = make_dataset(args.data, "train", args.batch_size, shuffle=True, seed=args.seed, repeat=True,
                              drop_remainder=True, shuffle_window=args.shuffle_window, expected_size=size,
                              packed=packed, start_step=start_step, shard_index=shard_index, shard_count=shard_count,
                              prefetch=False)
            # this process's replicas take its consecutive per-replica batches in turn
            return prefetch_ahead(ds.rebatch(context.get_per_replica_batch_size(args.batch_size)))

        return distributed(strategy, per_process), lambda: None
    data = make_dataset(args.data, "train", args.batch_size, shuffle=True, seed=args.seed, repeat=True,
                        shuffle_window=args.shuffle_window, expected_size=size, packed=packed, start_step=start_step)
    return data, lambda: None
