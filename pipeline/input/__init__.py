"""Input: a dataset directory -> shuffled batches, for as many epochs as asked.

`source.open_dataset` checks the shards and indexes their chunks; `order` is the epoch order
(chunks permuted, cut into windows, samples permuted per window); `reader` decodes windows and
cuts batches (`batch_stream`, NumPy, no TensorFlow); `sharding` splits each global batch among
processes; `chunk_reader` decodes codecs that need h5py in reader processes; `loader.make_dataset`
is the same stream as tf.data; `jax_feed` puts batches on a JAX device ahead of use.

Hands to the models: frames uint8 `(B, T, S, S)` (or packed uint8 `(B, S**3 / 8)`) and labels
uint8 `(B,)`.
"""
