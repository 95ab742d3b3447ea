"""Training on several processes, on one host or many: how they meet, which rows each reads, who writes.

    train ... --processes 2 --process-index 0 --addresses 10.0.0.1:7000,10.0.0.2:7000   # on host A
    train ... --processes 2 --process-index 1 --addresses 10.0.0.1:7000,10.0.0.2:7000   # on host B
    train ... --processes auto        # from the cluster environment: Slurm, TF_CONFIG, JAX's detectors

Every process runs the same command with its own `--process-index`; `--batch-size` stays the
global batch, split over processes x `--devices` (devices per process).

JAX: `jax.distributed.initialize(addresses[0], processes, index)` (process 0's address is the
coordinator; the others are not needed) before any JAX computation, with gloo's CPU collectives
where there is no accelerator; then `keras.distribution.DataParallel` over the first `--devices`
devices of every process, in process order (`replicas.strategy_scope`). Each process feeds its
rows [i*b, (i+1)*b) of every global batch, b = batch / processes (`pipeline.input.sharding`,
`jax_shard()`), as NumPy: Keras's `jax.make_array_from_process_local_data` places process i's rows at
the i-th block of the mesh's batch axis, which is rows [i*b, (i+1)*b) of the global batch since
the mesh lists the processes in order. `--processes auto`: `jax.distributed.initialize()` with no
arguments (Slurm, Open MPI, mpi4py, Kubernetes, Cloud TPU, or JAX_COORDINATOR_ADDRESS and the like).

TensorFlow: `tf.distribute.MultiWorkerMirroredStrategy` over workers at `--addresses` (every
worker's, index order: each serves on its own), or with `--processes auto` from TF_CONFIG or,
failing that, Slurm's variables. A worker drives its first `--devices` GPUs, or its one CPU. Its input
pipeline (`distribute_datasets_from_function`) is its rows of every global batch
(`input_context_shard`), cut per replica. Keras 3's TensorFlow `fit` needs two mends to run on
several workers at all (`replicas.fit_on_workers`).

Writing: process 0 (TensorFlow: the chief) writes the run directory; every other process writes
its checkpoints and model into a private temporary directory, removed when the process ends.
They must take part all the same: under TensorFlow, reading a metric's variables sums them across
workers, a collective every worker joins; and a run interrupted at a checkpoint stops every
process at the same step. RUN and the dataset must be at the same path on every host (a
shared file system): every process reads RUN's checkpoint to resume, and its shards to train.
"""
from __future__ import annotations

import argparse
import atexit
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import AUTO, UsageError, positive_int_or_auto


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--processes", type=positive_int_or_auto, default=None, metavar="N|auto",
                   help="processes training together, each running this command with its own --process-index "
                        "(default 1); auto: from the cluster environment (Slurm; TensorFlow: TF_CONFIG; JAX: "
                        "jax.distributed's detectors)")
    p.add_argument("--process-index", type=int, default=None, metavar="I",
                   help="this process's index, 0 to N-1 (process 0 writes the run directory)")
    p.add_argument("--addresses", default=None, metavar="HOST:PORT[,...]",
                   help="JAX: process 0's address (the coordinator); TensorFlow: every process's, in index order")


@dataclass(frozen=True)
class Launch:
    """How this process joins a run: `count` processes (None: from the cluster environment), this
    one `index` (None likewise), `addresses` (HOST:PORT strings, process 0's first)."""

    count: int | None = 1
    index: int | None = 0
    addresses: tuple[str, ...] = ()

    @property
    def single(self) -> bool:
        return self.count == 1


def _address(text: str) -> str:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UsageError(f"--addresses: {text.strip()!r} is not HOST:PORT")
    return f"{host}:{int(port)}"


def launch(args) -> Launch:
    """The launch options of `args` (--processes, --process-index, --addresses, --backend) checked;
    UsageError for a missing, extra or malformed one. Reads nothing, connects to nothing."""
    count, index, addresses = args.processes, args.process_index, args.addresses
    if count is None or count == 1:
        for name, value in (("--process-index", index), ("--addresses", addresses)):
            if value is not None and not (name == "--process-index" and value == 0):
                raise UsageError(f"{name} needs --processes N (N > 1) or --processes auto")
        return Launch()
    if count == AUTO:
        for name, value in (("--process-index", index), ("--addresses", addresses)):
            if value is not None:
                raise UsageError(f"--processes auto takes the cluster from the environment; drop {name}")
        return Launch(None, None, ())
    if index is None:
        raise UsageError(f"--processes {count} needs --process-index (0 to {count - 1})")
    if not 0 <= index < count:
        raise UsageError(f"--process-index must be in [0, {count}), got {index}")
    if not addresses:
        raise UsageError(f"--processes {count} needs --addresses HOST:PORT (process 0's; TensorFlow: every "
                         "process's)")
    found = tuple(_address(a) for a in addresses.split(","))
    if args.backend == "tensorflow" and len(found) != count:
        raise UsageError(f"--addresses: TensorFlow needs every process's address ({count}), got {len(found)}")
    if args.backend == "jax" and len(found) not in (1, count):
        raise UsageError(f"--addresses: give process 0's address, or all {count}; got {len(found)}")
    return Launch(count, index, found)


@dataclass
class Cluster:
    """The processes a run trains on, once joined: this one's `index` of `count`; `strategy`, the
    TensorFlow `MultiWorkerMirroredStrategy` (None under JAX or on one process); `chief`, whether
    this process writes the run directory."""

    index: int = 0
    count: int = 1
    strategy: object = None
    chief: bool = True

    def writes(self, run: Path) -> Path:
        """Where this process writes what it would write to `run`: `run` itself on the chief, else a
        private temporary directory (removed at exit)."""
        if self.chief:
            return run
        private = Path(tempfile.mkdtemp(prefix=f"train-process{self.index}-"))
        atexit.register(shutil.rmtree, private, ignore_errors=True)
        return private

    def barrier(self) -> None:
        """Return once every process has got here: what any of them checked before is checked before
        the chief writes (a no-op on one process)."""
        if self.count == 1:
            return
        if self.strategy is None:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("pipeline-train")
            return
        import tensorflow as tf

        strategy = self.strategy
        strategy.reduce("SUM", strategy.run(lambda: tf.constant(1.0)), axis=None)


def join(backend: str, spec: Launch, devices: int | None) -> Cluster:
    """Connect this process to the others of `spec` (blocking until all are there); call it after
    `backends.use(backend)` and before any JAX computation or TensorFlow op. `devices`: the
    accelerators each process drives (None: all it sees). UsageError where the cluster cannot form
    as asked. One process: nothing is connected."""
    if spec.single:
        return Cluster()
    if backend == "jax":
        return _join_jax(spec)
    return _join_tensorflow(spec, devices)


def _join_jax(spec: Launch) -> Cluster:
    import jax

    if "JAX_CPU_COLLECTIVES_IMPLEMENTATION" not in os.environ:  # processes all-reduce over TCP on CPUs
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    if spec.count is not None:  # every argument given: no cluster detection (Slurm's variables would pick devices)
        jax.distributed.initialize(spec.addresses[0], spec.count, spec.index, cluster_detection_method="deactivate")
    else:
        try:
            jax.distributed.initialize()
        except ValueError as e:  # what auto-detection raises where no cluster environment is found
            raise UsageError(f"--processes auto: no cluster environment found ({e})") from None
    index, count = jax.process_index(), jax.process_count()
    return Cluster(index, count, None, index == 0)


def _join_tensorflow(spec: Launch, devices: int | None) -> Cluster:
    import tensorflow as tf

    gpus = len(tf.config.list_physical_devices("GPU"))  # lists, without starting the runtime
    resolvers = tf.distribute.cluster_resolver
    if spec.count is not None:
        cluster, task_type, task_id = tf.train.ClusterSpec({"worker": list(spec.addresses)}), "worker", spec.index
    elif os.environ.get("TF_CONFIG"):
        found = resolvers.TFConfigClusterResolver()
        cluster, task_type, task_id = found.cluster_spec(), found.task_type, found.task_id
    elif os.environ.get("SLURM_JOB_ID"):
        found = resolvers.SlurmClusterResolver(gpus_per_node=gpus, auto_set_gpu=False)
        cluster, task_type, task_id = found.cluster_spec(), found.task_type, found.task_id
    else:
        raise UsageError("--processes auto: no cluster environment found (TensorFlow reads TF_CONFIG, or Slurm's "
                         "SLURM_* variables)")
    if gpus:
        if devices is not None and devices > gpus:
            raise UsageError(f"--devices {devices}: this process sees {gpus} GPU(s)")
        accelerators = {"GPU": devices or gpus}
    else:
        if devices not in (None, 1):
            raise UsageError(f"--devices {devices}: MultiWorkerMirroredStrategy trains one replica per CPU worker")
        accelerators = {}
    resolver = resolvers.SimpleClusterResolver(cluster, task_type=task_type, task_id=task_id, rpc_layer="grpc",
                                               num_accelerators=accelerators)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
    count = sum(len(cluster.job_tasks(job)) for job in cluster.jobs)
    return Cluster(_worker_index(cluster, task_type, task_id), count, strategy,
                   bool(strategy.extended.should_checkpoint))


def _worker_index(cluster, task_type: str, task_id: int) -> int:
    """The task's place among all tasks, the chief (if any) first, then the workers: the input
    pipeline order `MultiWorkerMirroredStrategy` gives them."""
    order = [(job, i) for job in ("chief", "worker") if job in cluster.jobs for i in range(len(cluster.job_tasks(job)))]
    return order.index((task_type, task_id))
