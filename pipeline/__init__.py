"""Moving-square pipeline: datasets, input, models, training and benchmarks for CNN-LSTM video
classification.

Stages, each a subpackage that imports only the ones listed before it:

    runtime   facts every stage can use: Keras backend, devices, versions, allocator settings
    dataset   the rules, the shard format and `generate`, `verify`, `show`
    input     shards -> shuffled batches: NumPy (`batch_stream`), tf.data (`make_dataset`), JAX
    models    the Keras networks (`build_model`) and the book's workflow
    training  `train`, `evaluate`, `predict` over run directories
    bench     the benchmark suites, result files and `report`

`errors` (the error kinds) sits below them all and `cli` (the command line) above them all.
"""
