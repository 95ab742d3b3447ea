"""Dataset: moving-square sequences written as sharded HDF5 files with a manifest.

`synth` draws sequences by the book's rules; `codecs` says how `frames` is stored; `shards`
writes and checks one shard; `manifest` describes a whole dataset; `generate` writes shards on
a Dask cluster; `verify` and `show` are the commands that check and draw a dataset.

Hands to the input stage: a directory with `manifest.json` and shards of frames uint8
`(n, T, S, S)`, labels uint8 `(n,)`, rows and cols int16 `(n, T)`.
"""
