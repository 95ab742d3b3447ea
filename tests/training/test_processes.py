"""train --processes N: several processes, each a subprocess here, meeting over loopback (127.0.0.1)
only: JAX through `jax.distributed` (gloo's CPU collectives), TensorFlow through
MultiWorkerMirroredStrategy (TF_CONFIG, or --addresses). The same global batches give the same
loss and weights on 1 and on N processes, up to rounding; a run checkpointed on n processes
resumes on m and ends where an uninterrupted one does. Every launch stops by itself: each
process has a deadline, and on any failure every process group still running is killed."""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from helpers import PY, ROOT, kill_group, run_arrays, run_history, spawn
from pipeline.cli import main
from pipeline.errors import positive_int_or_auto
from pipeline.training import processes

pytest.importorskip("keras")

INTERRUPTED = ROOT / "tests" / "training" / "interrupted_train.py"
# 96 samples / 16 = 6 steps an epoch, 12 in all; checkpoints at steps 4, 6, 8, 12
RUN_ARGS = ["--epochs", "2", "--batch-size", "16", "--checkpoint-every", "4", "--seed", "5", "--verbose", "0"]
# Several processes sum the same per-sample gradients in another order: float32 rounding only.
# Measured on a 2-core Xeon, 12 steps, 1 vs 2 and n -> m processes: losses within 9e-8 (relative),
# weights within 1.2e-7 (JAX) and 4.5e-8 (TensorFlow).
LOSS_TOLERANCE = 1e-5
WEIGHT_TOLERANCE = 1e-5
LAUNCH_TIMEOUT = 240  # seconds for all the processes of one launch together


def loopback_ports(n: int) -> list[int]:
    """`n` distinct TCP ports free on 127.0.0.1 just now."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def launch(backend: str, count: int, argv: list, logs: Path, *, stop_after: int | None = None,
           tf_config: bool = False, timeout: float = LAUNCH_TIMEOUT) -> list[int]:
    """Run `pipeline ARGV` on `count` processes of `backend`, over loopback; their exit statuses,
    in index order. One process runs plain ARGV. `stop_after`: under interrupted_train.py, each
    process stopping right after that checkpoint. `tf_config`: TensorFlow's cluster from TF_CONFIG
    (`--processes auto`) rather than --addresses. A process that fails kills the others at once."""
    prefix = [PY, str(INTERRUPTED), str(stop_after)] if stop_after else [PY, "-m", "pipeline"]
    ports = loopback_ports(count)
    logs.mkdir(parents=True, exist_ok=True)
    procs = []
    try:
        for i in range(count):
            env, extra = {**os.environ, "TMPDIR": str(logs / f"tmp{i}")}, []
            (logs / f"tmp{i}").mkdir(exist_ok=True)
            if count > 1 and backend == "jax":
                env["JAX_COORDINATOR_BIND_ADDRESS"] = f"127.0.0.1:{ports[0]}"  # not every interface
                extra = ["--processes", count, "--process-index", i, "--addresses", f"127.0.0.1:{ports[0]}"]
            elif count > 1 and tf_config:
                env["TF_CONFIG"] = json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                               "task": {"type": "worker", "index": i}})
                extra = ["--processes", "auto"]
            elif count > 1:
                extra = ["--processes", count, "--process-index", i,
                         "--addresses", ",".join(f"127.0.0.1:{p}" for p in ports)]
            with open(logs / f"{i}.out", "w") as out, open(logs / f"{i}.err", "w") as err:
                procs.append(spawn([*prefix, *argv, *extra], stdout=out, stderr=err, env=env))
        deadline = time.monotonic() + timeout
        while any(p.poll() is None for p in procs):
            failed = [p for p in procs if p.poll() not in (None, 0, 130)]
            if failed or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        for p in procs:
            if p.poll() is None:
                kill_group(p)
    codes = [p.returncode for p in procs]
    if any(c not in (0, 130) for c in codes):
        tails = "\n".join(f"--- process {i} exit {c}:\n{(logs / f'{i}.err').read_text()[-1500:]}"
                          for i, c in enumerate(codes))
        raise AssertionError(f"a launch failed or ran past {timeout} s:\n{tails}")
    return codes


def train_args(backend: str, data: Path, out: Path) -> list:
    return ["train", "--backend", backend, "--data", data, "--out", out, *RUN_ARGS] + \
        (["--no-jit"] if backend == "tensorflow" else [])


def max_weight_difference(a: Path, b: Path) -> float:
    got, want = run_arrays(a), run_arrays(b)
    assert sorted(got) == sorted(want) and any("optimizer" in k for k in want)
    return max(float(np.max(np.abs(got[k].astype(np.float64) - want[k]), initial=0.0)) for k in want)


def assert_close_runs(got: Path, want: Path) -> None:
    g, w = run_history(got), run_history(want)
    assert g.keys() == w.keys()
    assert all(g[k] == pytest.approx(w[k], rel=LOSS_TOLERANCE) for k in w), (g, w)
    assert max_weight_difference(got, want) < WEIGHT_TOLERANCE


@pytest.fixture(scope="module", params=["jax", "tensorflow"])
def one_process(request, tiny_dataset, tmp_path_factory):
    """(backend, an uninterrupted run of RUN_ARGS on one process)."""
    if request.param == "jax":
        pytest.importorskip("jax")
    root = tmp_path_factory.mktemp("one-process")
    out = root / request.param
    assert launch(request.param, 1, train_args(request.param, tiny_dataset, out), root / "logs") == [0]
    return request.param, out


def test_two_processes_take_the_same_steps_as_one(one_process, tiny_dataset, tmp_path):
    backend, reference = one_process
    out = tmp_path / "run"
    # TensorFlow's cluster from TF_CONFIG here; from --addresses in the elastic tests
    assert launch(backend, 2, train_args(backend, tiny_dataset, out), tmp_path / "logs",
                  tf_config=backend == "tensorflow") == [0, 0]
    assert_close_runs(out, reference)
    config = json.loads((out / "config.json").read_text())
    assert (config["processes"], config["devices"], config["batch_size"], config["batch_size_per_device"]) == \
        (2, 1, 16, 8)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "config.json", "history.json", "model.keras"]
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["step-000000012"]  # only process 0 writes RUN
    assert "wrote" in (tmp_path / "logs" / "0.out").read_text()
    assert "wrote" not in (tmp_path / "logs" / "1.out").read_text()
    assert not list((tmp_path / "logs" / "tmp1").glob("train-process*"))  # process 1 saved privately, then removed it


def test_jax_global_batches_are_the_processes_rows_in_process_order(tmp_path):
    pytest.importorskip("jax")
    port = loopback_ports(1)[0]
    env = {**os.environ, "JAX_COORDINATOR_BIND_ADDRESS": f"127.0.0.1:{port}"}
    procs = [spawn([PY, ROOT / "tests" / "training" / "jax_process_order.py", i, f"127.0.0.1:{port}"],
                   stdout=open(tmp_path / f"{i}.out", "w"), stderr=open(tmp_path / f"{i}.err", "w"), env=env)
             for i in range(2)]
    try:
        codes = [p.wait(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                kill_group(p)
    assert codes == [0, 0], (tmp_path / "0.err").read_text()[-1500:]
    assert all("order ok" in (tmp_path / f"{i}.out").read_text() for i in range(2))


@pytest.mark.slow
@pytest.mark.parametrize("stop", [4, 6], ids=["mid-epoch", "epoch-end"])
@pytest.mark.parametrize("before, after", [(2, 1), (1, 2)], ids=["2-to-1", "1-to-2"])
def test_a_run_stopped_on_n_processes_resumes_on_m(one_process, before, after, stop, tiny_dataset, tmp_path):
    backend, reference = one_process
    out = tmp_path / "run"
    assert launch(backend, before, train_args(backend, tiny_dataset, out), tmp_path / "cut",
                  stop_after=stop) == [130] * before
    assert not (out / "model.keras").exists()
    assert [p.name for p in (out / "checkpoints").iterdir()] == [f"step-{stop:09d}"]
    assert launch(backend, after, ["train", "--resume", out, "--verbose", "0"], tmp_path / "resumed") == [0] * after
    assert f"resuming {out} at step {stop} of 12" in (tmp_path / "resumed" / "0.out").read_text()
    assert json.loads((out / "config.json").read_text())["processes"] == after
    assert_close_runs(out, reference)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_four_processes_resume_on_two_and_one_on_three(backend, tiny_dataset, tmp_path):
    pytest.importorskip(backend)
    args = ["--epochs", "2", "--batch-size", "12", "--checkpoint-every", "4", "--seed", "5", "--verbose", "0"]
    train = ["train", "--backend", backend, "--data", tiny_dataset, *args] + \
        (["--no-jit"] if backend == "tensorflow" else [])  # 8 steps an epoch of 12
    assert launch(backend, 1, [*train, "--out", tmp_path / "whole"], tmp_path / "logs-whole") == [0]
    for before, after in ((4, 2), (1, 3)):
        out = tmp_path / f"{before}-to-{after}"
        assert launch(backend, before, [*train, "--out", out], tmp_path / f"logs-{out.name}-cut",
                      stop_after=4) == [130] * before
        assert launch(backend, after, ["train", "--resume", out, "--verbose", "0"],
                      tmp_path / f"logs-{out.name}") == [0] * after
        assert_close_runs(out, tmp_path / "whole")


def test_launch_options_are_checked_before_anything_is_read_or_joined(tiny_dataset, tmp_path, capsys):
    base = ["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "r")]
    for extra, message in (
            (["--process-index", "1"], "--process-index needs --processes N (N > 1) or --processes auto"),
            (["--addresses", "127.0.0.1:1"], "--addresses needs --processes N"),
            (["--processes", "2"], "--processes 2 needs --process-index (0 to 1)"),
            (["--processes", "2", "--process-index", "2"], "--process-index must be in [0, 2), got 2"),
            (["--processes", "2", "--process-index", "0"], "--processes 2 needs --addresses HOST:PORT"),
            (["--processes", "2", "--process-index", "0", "--addresses", "127.0.0.1"], "is not HOST:PORT"),
            (["--processes", "2", "--process-index", "0", "--addresses", "127.0.0.1:1"],
             "TensorFlow needs every process's address (2), got 1"),
            (["--processes", "3", "--process-index", "0", "--addresses", "h:1,h:2", "--backend", "jax"],
             "give process 0's address, or all 3; got 2"),
            (["--processes", "auto", "--process-index", "0"], "--processes auto takes the cluster from the "
                                                             "environment; drop --process-index"),
            (["--processes", "2", "--process-index", "0", "--addresses", "h:1,h:2", "--validation"],
             "--validation scores the test split on one process")):
        assert main([*base, *extra]) == 2, extra
        assert message in capsys.readouterr().err, extra
    for bad in ("0", "two"):
        with pytest.raises(SystemExit) as stopped:
            main([*base, "--processes", bad])
        assert stopped.value.code == 2
        assert "must be a positive integer or 'auto'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_one_process_is_the_default_and_auto_defers_to_the_environment():
    class Args:
        backend, processes, process_index, addresses = "jax", None, None, None

    assert processes.launch(Args()) == processes.Launch(1, 0, ())
    Args.processes = "auto"
    assert processes.launch(Args()) == processes.Launch(None, None, ())
    Args.processes, Args.process_index, Args.addresses = 2, 1, "10.0.0.1:7000"
    assert processes.launch(Args()) == processes.Launch(2, 1, ("10.0.0.1:7000",))
    assert positive_int_or_auto("auto") == "auto" and positive_int_or_auto("4") == 4


def test_resume_takes_the_launch_options_of_its_own_command_line(tmp_path):
    from pipeline.training import train

    run = tmp_path / "run"
    run.mkdir()
    stored = {"data": str(tmp_path), "out": str(run), "processes": 2, "process_index": 1,
              "addresses": "10.0.0.1:7000", "devices": 2, "batch_size": 16, "epochs": 3}
    (run / "config.json").write_text(json.dumps({"args": stored}))

    given = argparse.Namespace(resume=run, verbose=0, devices=None, processes=None, process_index=None,
                               addresses=None)
    resumed = train.resumed_args(given)  # one process, on the run's own devices
    assert (resumed.processes, resumed.process_index, resumed.addresses, resumed.devices) == (None, None, None, 2)
    assert (resumed.batch_size, resumed.epochs) == (16, 3)
    given.devices, given.processes, given.process_index, given.addresses = 1, 4, 3, "10.0.0.1:7000"
    resumed = train.resumed_args(given)
    assert (resumed.processes, resumed.process_index, resumed.addresses, resumed.devices) == \
        (4, 3, "10.0.0.1:7000", 1)


def test_tf_worker_order_puts_the_chief_first():
    tf = pytest.importorskip("tensorflow")
    cluster = tf.train.ClusterSpec({"chief": ["a:1"], "worker": ["b:1", "c:1"]})
    assert [processes._worker_index(cluster, t, i) for t, i in (("chief", 0), ("worker", 0), ("worker", 1))] == \
        [0, 1, 2]


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
