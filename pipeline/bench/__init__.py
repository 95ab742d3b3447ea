"""`bench`: measure generation, loading, training and accuracy over a grid; write a result file.

    python -m pipeline bench [--quick | --full | --gpu | --book-budget] [--backend tensorflow|jax]

The grid (sizes x batch sizes x suites, and each suite's budget) is data: `grid.PRESETS`
holds `quick` (a smoke run of every suite), `default` (sized for a few minutes on a 2-core CPU),
`full`, `gpu` and `book-budget`; `--sizes`, `--batch-sizes`, `--suites` override a preset. Datasets are
generated once under `--data-root` and reused (`data`). What each suite measures is in its
module's docstring: `generate`, `load`, `train`, `accuracy`. Every row records the device,
the Keras backend and its version (`recorder`). A failing cell (an exception, e.g. out of
memory) becomes rows with `value: null` and `error` set; the run goes on.

Modules: `grid` (grid, presets), `recorder` (rows stamped with their machine and evidence; the schema
is `pipeline.results.format`), `monitor` (the host's and GPUs' state during each cell), `data` (the
dataset cache), `baselines` (in-memory, from_generator and synthetic pipelines), `ours` (our loader per
backend), `consumers`, `backend`, `memory` (RSS), `timing` (timers, medians), `progress`, one module per
suite, `command` (the command line, which ends with the run's headline). Reading, comparing and
rendering results: `pipeline.results`.
"""
