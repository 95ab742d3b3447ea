"""What one bench run measures, and with what budget: `Grid` and the named `PRESETS`.

Budgets are whole passes, not batch counts: the `load` suite times at least
`load_min_epochs` epochs (or `load_min_windows` shuffle windows, whichever holds more
samples) per timed window, and the `train` suite at least one epoch of the bench dataset
per feed, so that no timing fits inside what a warm-up already buffered.
"""
from __future__ import annotations

from dataclasses import dataclass

from pipeline.results.format import SUITES
from pipeline.runtime.cpus import default_readers, usable_cpus
from pipeline.runtime.devices import PRECISIONS

# ours-packed: bit-packed batches into the same model behind UnpackFrames; synthetic: one batch
# already on the device, repeated (the upper bound); synthetic-packed: the same for the packed model.
TRAIN_FEEDS = ("ours", "ours-packed", "in-memory", "synthetic", "synthetic-packed")
FIT_FEEDS = ("ours", "in-memory", "synthetic")
MODELS = ("book", "fast", "rowcol")  # pipeline.models.networks.MODEL_NAMES, named here so a grid checks without Keras


def _positive_ints(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value >= 1


@dataclass(frozen=True)
class Grid:
    """A bench run's grid and budgets; validates itself.

    gen_raw_mb / book_raw_mb: uint8 frame megabytes per timed generation run (ours / book);
      samples = MB * 1e6 / size**3, at most gen_max_samples (ours) or the book's 5,000 (book).
    gen_shard_size: sequences per shard of those runs (fewer if a worker would get under 4 shards).
    workers: generator worker counts; () -> 1, 2, all cores.
    load_repeats: timed windows per load cell, run round-robin across the cells.
    train_steps: timed steps per train cell; None -> one epoch of the bench dataset.
    fit_sizes: sizes at which `model.fit`'s wall time per epoch is measured (fit_models, fit_epochs
      timed epochs after a first, untimed one).
    accuracy_seeds: initial seeds per accuracy cell; accuracy_sizes: None -> sizes.
    precisions: Keras dtype policies (`PRECISIONS`) of the train suite; None -> this device's default
      (`pipeline.runtime.devices.default_precision`), which `fit`, the scaling cells and the accuracy suite
      always use.
    devices: device counts of the train suite's scaling cells (`pipeline.bench.scaling`: `fit` on our
      loader, the global batch split over N replicas); None -> this machine's default
      (`replicas.default_devices()`), which on a CPU (1) measures no scaling cells.
      scaling_repeats: `fit` calls per count, round-robin across the counts, each of one untimed
      epoch and `scaling_epochs` timed ones (an epoch: one pass of the bench dataset).
    au_demands: the `au` suite's step times, as fractions of the loader's own throughput;
      au_buffer_multiple: its timed windows hold at least that many times what the pipeline buffers.
    dataset_*: the train/test dataset each size's load/au/train/accuracy suites read.
    """

    sizes: tuple[int, ...] = (32, 50)
    batch_sizes: tuple[int, ...] = (32, 256)
    suites: tuple[str, ...] = SUITES
    workers: tuple[int, ...] = ()
    gen_raw_mb: float = 20000.0  # 160,000 sequences at size 50: seconds of work, so a run's fixed cost fades
    gen_max_samples: int = 400_000
    gen_shard_size: int = 10_000
    gen_repeats: int = 5  # a VM's speed drifts between runs; the 2/1-worker ratio needs several pairs
    book_raw_mb: float = 625.0  # 5,000 sequences at size 50: the book's own call (5 GB of float64)
    book_repeats: int = 3
    load_repeats: int = 5
    load_min_epochs: int = 8
    load_min_windows: int = 3
    load_unshuffled: bool = True  # shuffled against unshuffled, for each mechanism
    load_graph: bool = True  # mechanism="graph" cells (TensorFlow ops only: what tf.data service runs)
    load_from_generator: bool = True
    load_graph_consumer: bool = True  # tf.data pulled inside a tf.function too, as fit does
    au_demands: tuple[float, ...] = (0.25, 0.5, 0.8, 0.9, 1.0)
    au_buffer_multiple: int = 4
    train_models: tuple[str, ...] = ("fast",)
    train_feeds: tuple[str, ...] = TRAIN_FEEDS
    train_steps: int | None = None
    train_warmup: int = 3
    train_reference_models: tuple[str, ...] = ("book",)
    train_reference_feeds: tuple[str, ...] = ("in-memory",)
    train_reference_max_batch: int = 32
    train_reference_steps: int = 16
    precisions: tuple[str, ...] | None = None
    fit_sizes: tuple[int, ...] = (50,)
    fit_batch_sizes: tuple[int, ...] = (32,)
    fit_models: tuple[str, ...] = ("fast",)
    fit_epochs: int = 2
    book_workflow_max_size: int = 50
    book_workflow_steps: int = 6
    devices: tuple[int, ...] | None = None
    scaling_repeats: int = 2
    scaling_epochs: int = 2
    accuracy_models: tuple[str, ...] = ("book", "fast")
    accuracy_sizes: tuple[int, ...] | None = (50,)
    accuracy_seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    accuracy_train_samples: int = 1024
    accuracy_batch: int = 32
    accuracy_wrap: bool = False
    dataset_samples: int = 4096
    dataset_test_samples: int = 1024
    dataset_shard_size: int = 1024
    variant: str = "trail"

    def __post_init__(self):
        for name in ("sizes", "batch_sizes", "suites"):
            if not getattr(self, name):
                raise ValueError(f"{name.replace('_', '-')} is empty: nothing to measure")
        for s in (*self.sizes, *self.fit_sizes, *(self.accuracy_sizes or ())):
            if isinstance(s, bool) or not isinstance(s, int) or not 4 <= s <= 512:
                raise ValueError(f"sizes must be integers in 4..512, got {s!r}")
        for b in self.batch_sizes:
            if not _positive_ints(b):
                raise ValueError(f"batch sizes must be positive integers, got {b!r}")
        for w in self.workers:
            if not _positive_ints(w) or w > 1024:
                raise ValueError(f"workers must be integers in 1..1024, got {w!r}")
        if self.devices is not None and (not self.devices or any(not _positive_ints(d) or d > 1024
                                                                 for d in self.devices)):
            raise ValueError(f"devices must be integers in 1..1024, got {self.devices!r}")
        bad = [m for m in (*self.train_models, *self.accuracy_models) if m not in MODELS]
        if bad:
            raise ValueError(f"unknown model {bad[0]!r}; models are {', '.join(MODELS)}")
        unknown = [s for s in self.suites if s not in SUITES]
        if unknown:
            raise ValueError(f"unknown suite {unknown[0]!r}; suites are {', '.join(SUITES)}")
        bad = [f for f in (*self.train_feeds, *self.train_reference_feeds) if f not in TRAIN_FEEDS]
        if bad:
            raise ValueError(f"unknown train feed {bad[0]!r}; feeds are {', '.join(TRAIN_FEEDS)}")
        bad = [p for p in self.precisions or () if p not in PRECISIONS]
        if bad or self.precisions == ():
            raise ValueError(f"precisions must be some of {', '.join(PRECISIONS)}, got {self.precisions!r}")
        if not self.au_demands or any(isinstance(d, bool) or not isinstance(d, int | float) or not 0 < d <= 10
                                      for d in self.au_demands):
            raise ValueError(f"au demands must be fractions in (0, 10], got {self.au_demands!r}")
        if not self.accuracy_seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0
                                          for s in self.accuracy_seeds):
            raise ValueError(f"accuracy seeds must be non-negative integers, got {self.accuracy_seeds!r}")
        for name in ("gen_max_samples", "gen_shard_size", "gen_repeats", "book_repeats", "load_repeats",
                     "load_min_epochs", "load_min_windows", "train_reference_max_batch", "train_reference_steps",
                     "fit_epochs", "book_workflow_steps", "au_buffer_multiple", "scaling_repeats", "scaling_epochs",
                     "accuracy_train_samples", "accuracy_batch", "dataset_samples", "dataset_test_samples",
                     "dataset_shard_size"):
            if not _positive_ints(getattr(self, name)):
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if self.train_steps is not None and not _positive_ints(self.train_steps):
            raise ValueError(f"train_steps must be a positive integer, got {self.train_steps!r}")
        if max(self.batch_sizes) > self.dataset_samples:
            raise ValueError(f"batch size {max(self.batch_sizes)} exceeds the bench dataset "
                             f"({self.dataset_samples} samples)")

    def worker_counts(self) -> tuple[int, ...]:
        """Generator workers in the generate suite: 1, 2 and every CPU this process may use."""
        return self.workers or tuple(sorted({1, 2, usable_cpus()}))

    def train_precisions(self) -> tuple[str, ...]:
        """The train suite's precisions on this device (imports Keras)."""
        from pipeline.runtime.devices import default_precision

        return self.precisions or (default_precision(),)

    def device_counts(self) -> tuple[int, ...]:
        """`devices`, or this machine's default: every visible GPU, 1 on a CPU (imports Keras)."""
        from pipeline.training.replicas import default_devices

        return self.devices or (default_devices(),)

    def scaling_counts(self) -> tuple[int, ...]:
        """Device counts of the train suite's scaling cells, ascending, 1 always among them (the
        baseline of `scaling_efficiency`); () where none was asked for and this machine has one device."""
        counts = self.device_counts()
        if self.devices is None and counts == (1,):
            return ()
        return tuple(sorted({1, *counts}))

    def reader_counts(self) -> tuple[int, ...]:
        """Our loader's readers in the load suite: 1, 2 and its default (`default_readers()`)."""
        return tuple(sorted({1, 2, default_readers()}))

    def steps_per_epoch(self, batch_size: int) -> int:
        """Whole batches in one epoch of the bench dataset's train split."""
        return max(1, self.dataset_samples // batch_size)

    def timed_train_steps(self, batch_size: int) -> int:
        return self.train_steps or self.steps_per_epoch(batch_size)

    def train_cells(self) -> list[tuple[str, int, tuple[str, ...], int]]:
        """(model, batch size, feeds, timed steps) of the train suite at one size, in the order they run."""
        cells = [(m, b, self.train_feeds, self.timed_train_steps(b))
                 for m in self.train_models for b in self.batch_sizes]
        cells += [(m, b, self.train_reference_feeds, self.train_steps or self.train_reference_steps)
                  for m in self.train_reference_models if m not in self.train_models
                  for b in self.batch_sizes if b <= self.train_reference_max_batch]
        return cells

    def accuracy_grid_sizes(self) -> tuple[int, ...]:
        return self.accuracy_sizes or self.sizes


PRESETS = {
    # A smoke run: one size and batch size, small budgets, every suite and feed once.
    "quick": Grid(sizes=(32,), batch_sizes=(32,), gen_raw_mb=200.0, gen_repeats=2, book_raw_mb=10.0,
                  book_repeats=1, load_repeats=2, load_min_windows=1, au_demands=(0.5, 1.0), train_warmup=2,
                  train_reference_steps=8, fit_sizes=(), book_workflow_steps=3, accuracy_sizes=None,
                  accuracy_seeds=(0, 1), accuracy_train_samples=512, dataset_samples=1024,
                  dataset_test_samples=256, dataset_shard_size=256),
    # Sized for about 24 minutes on a 2-core CPU: the loader at sizes 32 and 50, batches 32 and 256,
    # shuffled as training reads it (the unshuffled twins are --full's); `fast` over every feed, the
    # book's network as a reference; `fit` at size 50, batch 32; five seeds of `book` and `fast` at size 50.
    "default": Grid(load_unshuffled=False),
    "full": Grid(sizes=(32, 50, 100), batch_sizes=(32, 64, 256), load_unshuffled=True,
                 train_models=("fast", "book", "rowcol"), train_reference_models=(), fit_sizes=(50, 100),
                 fit_batch_sizes=(32, 256), book_workflow_steps=20, accuracy_models=("book", "fast", "rowcol"),
                 accuracy_sizes=(50,), accuracy_train_samples=5000, accuracy_wrap=True, dataset_samples=16384,
                 dataset_test_samples=4096, dataset_shard_size=2048),
    # What a GPU answers: loader, in-memory and synthetic feeds at sizes 50 and 100,
    # batches up to 1024, float32 against mixed bfloat16. 5,120 sequences (5 GB in memory at size 100): the
    # book's accuracy budget, and load windows of seconds.
    "gpu": Grid(sizes=(50, 100), batch_sizes=(32, 256, 1024), suites=("load", "train", "accuracy"),
                load_repeats=3, load_unshuffled=True, load_graph=True, load_from_generator=False,
                train_models=("fast", "book"), train_reference_models=(), precisions=("float32", "mixed_bfloat16"),
                fit_sizes=(50,), fit_batch_sizes=(32, 256), book_workflow_max_size=0,
                accuracy_models=("book", "fast"), accuracy_sizes=(50,), accuracy_train_samples=5000,
                dataset_samples=5120, dataset_test_samples=2048, dataset_shard_size=1024),
    # The book's training budget (one epoch over 5,000 sequences, batch 32) judged on 10,000 held
    # out, from five initial seeds.
    "book-budget": Grid(sizes=(10, 25, 50), batch_sizes=(32,), suites=("accuracy",),
                        accuracy_models=("book", "fast", "rowcol"), accuracy_sizes=None,
                        accuracy_train_samples=5000, accuracy_batch=32, accuracy_wrap=True, dataset_samples=5000,
                        dataset_test_samples=10000, dataset_shard_size=1000, fit_sizes=()),
}
