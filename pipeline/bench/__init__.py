"""`bench`: measure generation, loading, training and accuracy over a grid; write a result file.

    python -m pipeline bench [--quick | --full | --gpu | --book-budget] [--backend tensorflow|jax]

The grid (sizes x batch sizes x suites, and each suite's budget) is data: `grid.PRESETS`
holds `quick` (a smoke run of every suite), `default` (sized for a few minutes on a 2-core CPU),
`full`, `gpu` and `book-budget`; `--sizes`, `--batch-sizes`, `--suites` override a preset. Datasets are
generated once under `--data-root` and reused (`data`). What each suite measures is in its
module's docstring: `generate`, `load`, `train`, `accuracy`. Every row records the device,
the Keras backend and its version (`results`). A failing cell (an exception, e.g. out of
memory) becomes rows with `value: null` and `error` set; the run goes on.

Modules: `grid` (grid, presets), `results` (the result schema, shared with `report`),
`data` (the dataset cache), `baselines` (in-memory, from_generator and synthetic pipelines),
`ours` (our loader per backend), `backend`, `memory` (RSS, CPU time), one module per suite,
`summary` (the Markdown summary), `markdown` (tables), `command` (the command line).
"""
from __future__ import annotations

from pipeline.bench.command import add_arguments, grid_from_args, run, run_bench
from pipeline.bench.data import NAIVE_CODEC, dataset_params, dataset_ready, ensure_dataset, read_split
from pipeline.bench.grid import PRESETS, SUITES, Grid
from pipeline.bench.results import FORMAT, FORMAT_VERSION, ROW_KEYS, UNITS, Recorder, value_of, write_csv
from pipeline.bench.summary import markdown_summary

__all__ = ["FORMAT", "FORMAT_VERSION", "NAIVE_CODEC", "PRESETS", "ROW_KEYS", "SUITES", "UNITS", "Grid", "Recorder",
           "add_arguments", "dataset_params", "dataset_ready", "ensure_dataset", "grid_from_args", "markdown_summary",
           "read_split", "run", "run_bench", "value_of", "write_csv"]
