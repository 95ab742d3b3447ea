"""The loader's peak memory against its stated bound, for datasets of two sizes.

    python bench/loader_memory.py --size 50 --samples 16384,65536 --out bench/results/loader-memory.json

For each dataset size and each of packed / unpacked batches, iterates `--epochs` whole shuffled
epochs of `pipeline.input.loader.make_dataset` (batch `--batch-size`, defaults otherwise) and samples
the process's resident memory every 20 ms. The bound (`pipeline.input.loader`): `2 * readers + 1`
windows of rows, plus prefetched batches, plus up to `pipeline.runtime.malloc.TRIM_THRESHOLD` of freed
buffers that glibc keeps for reuse. The growth over the RSS after opening the dataset should
stay under it, and should not grow with the dataset.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path


def measure(directory: Path, batch_size: int, epochs: int, packed: bool) -> dict:
    import tensorflow as tf

    from pipeline.bench.memory import RssSampler, rss_bytes
    from pipeline.input.loader import make_dataset
    from pipeline.input.reader import WindowReader, default_window
    from pipeline.input.source import open_dataset
    from pipeline.runtime.malloc import TRIM_THRESHOLD

    for _ in tf.data.Dataset.range(64).map(lambda x: x + 1, num_parallel_calls=2).batch(8).prefetch(2):
        pass  # TensorFlow's runtime (thread pools, function tracing) counted before the baseline
    src = open_dataset(directory, "train", check_hashes=False)
    readers = os.cpu_count() or 1
    window = WindowReader(src, window_samples=default_window(src)).window_bytes
    ds = make_dataset(directory, "train", batch_size, repeat=True, drop_remainder=True, packed=packed, source=src)
    steps = epochs * src.samples // batch_size
    opened = rss_bytes()
    with RssSampler() as rss:
        start = time.perf_counter()
        for _, _ in ds.take(steps):
            pass
        seconds = time.perf_counter() - start
    batch_bytes = batch_size * (src.size ** 3 // (8 if packed else 1))
    return {"samples": src.samples, "packed": packed, "readers": readers, "window_mb": window / 1e6,
            "bound_mb": ((2 * readers + 1) * window + 8 * batch_bytes + TRIM_THRESHOLD) / 1e6,
            "rss_after_open_mb": opened / 1e6, "peak_growth_mb": (rss.peak - opened) / 1e6,
            "samples_per_s": steps * batch_size / seconds}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=50)
    p.add_argument("--samples", default="16384,65536", help="comma-separated train split sizes")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--data-root", type=Path, default=Path("datasets"))
    p.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    p.add_argument("--cell", type=Path, help=argparse.SUPPRESS)  # measure one dataset directory, print JSON
    p.add_argument("--packed", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.cell:
        print(json.dumps(measure(args.cell, args.batch_size, args.epochs, args.packed)))
        return 0
    from pipeline.bench.data import ensure_dataset
    from pipeline.dataset.manifest import DatasetParams

    rows = []
    for n in (int(v) for v in args.samples.split(",")):
        params = DatasetParams(size=args.size, samples=n, test_samples=1, shard_size=2048)
        directory = ensure_dataset(args.data_root, params)
        for packed in (True, False):  # each cell in a fresh process: no buffers left from the one before
            cell = [sys.executable, __file__, "--cell", str(directory), "--batch-size", str(args.batch_size),
                    "--epochs", str(args.epochs)] + (["--packed"] if packed else [])
            out = subprocess.run(cell, capture_output=True, text=True, check=True).stdout
            row = json.loads(out.strip().splitlines()[-1])
            rows.append(row)
            kind = "packed  " if packed else "unpacked"
            print(f"samples {row['samples']:>7,}  {kind}  window {row['window_mb']:6.1f} MB  "
                  f"bound {row['bound_mb']:7.1f} MB  peak growth {row['peak_growth_mb']:7.1f} MB  "
                  f"({row['samples_per_s']:,.0f} samples/s)", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        doc = {"size": args.size, "batch_size": args.batch_size, "rows": rows}
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
