"""Generation figures: per-core throughput against the book's generator, the codec table,
and worker memory for N and 10N sequences, all from one run.

    .venv/bin/python bench/generation.py [--size 50] [--samples 2048] [--repeats 5]

Per-core throughput is one process running `write_shard` (render + compress + write +
fsync + SHA-256): what one Dask worker does per shard, without the cluster, and with the
workers' allocator settings (`pipeline.runtime.malloc`). The shard-size table shows a shard's fixed
cost (file, attributes, fsync, rename) against its sequences.

The book's `generate_examples` is timed two ways. "cold": as the book's workflow runs
it, one call in a fresh process (the book asks for 5,000 sequences, 5 GB of float64);
its cost is dominated by first touching that memory. "warm": repeated small calls in one
process, where the allocator recycles freed memory; an upper bound the book never sees.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py

from pipeline.bench.timing import Summary
from pipeline.dataset import codecs
from pipeline.dataset.shards import ShardPlan, write_shard
from pipeline.dataset.synth import SequenceSpec
from pipeline.models.book_workflow import cold_generate_seconds, generate_examples
from pipeline.results.markdown import number, ratio, spread, table
from pipeline.runtime import malloc


def timed(fn, repeats: int) -> list[float]:
    """Wall seconds of `repeats` calls after one warm-up call."""
    fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def rate(n: int, seconds: list[float]) -> dict:
    """samples/s over repeats: median, p10, p90."""
    return dataclasses.asdict(Summary.of([n / s for s in seconds]))


def book_warm_rate(size: int, n: int, repeats: int) -> dict:
    rng = random.Random(0)
    return rate(n, timed(lambda: generate_examples(size, n, rng), repeats))


def book_cold_rate(size: int, n: int, repeats: int) -> dict:
    """One `generate_examples(size, n)` call per fresh process, as the book's workflow makes it."""
    return rate(n, [cold_generate_seconds(size, n) for _ in range(repeats)])


def codec_rows(size: int, samples: int, repeats: int, scratch: Path) -> list[dict]:
    rows = []
    for codec in codecs.CODECS:
        plan = ShardPlan("train", 0, 0, samples, 0, SequenceSpec(size), codecs.DEFAULT_CHUNK, codec)
        write = rate(samples, timed(lambda: write_shard(scratch, plan), repeats))
        path = scratch / plan.name

        def read():
            with h5py.File(path, "r") as f:
                f["frames"][:]

        rows.append({"codec": codec, "write": write, "read": rate(samples, timed(read, repeats)),
                     "bytes_per_sample": path.stat().st_size / samples,
                     "ratio": samples * size ** 3 / path.stat().st_size})
    return rows


def shard_size_rows(size: int, shard_sizes: tuple[int, ...], repeats: int, scratch: Path) -> list[dict]:
    """Per-core samples/s of the default codec for shards of each size, same total of sequences per timing."""
    rows = []
    total = max(shard_sizes)
    for shard in shard_sizes:
        plans = [ShardPlan("train", i, i * shard, shard, 0, SequenceSpec(size), codecs.DEFAULT_CHUNK,
                           codecs.DEFAULT_CODEC) for i in range(total // shard)]
        write = rate(total, timed(lambda: [write_shard(scratch, plan) for plan in plans], repeats))
        rows.append({"shard_size": shard, "write": write})
    return rows


def memory_rows(size: int, scratch: Path) -> list[dict]:
    """Peak worker RSS generating N and 10N sequences with the same shard size (`generate`, 2 workers)."""
    rows = []
    for total in (5000, 50000):
        out = subprocess.run([sys.executable, "-m", "pipeline", "generate", "--out", str(scratch / f"mem{total}"),
                              "--size", str(size), "--samples", str(total), "--test-samples", "1000",
                              "--shard-size", "500", "--workers", "2", "--quiet"],
                             capture_output=True, text=True, check=True).stdout
        peak = float(re.search(r"peak worker memory (\d+) MiB", out).group(1))
        rows.append({"sequences": total + 1000, "shard_size": 500, "peak_worker_rss_mib": peak})
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=50)
    p.add_argument("--samples", type=int, default=2048, help="sequences per timed shard")
    p.add_argument("--book-samples", type=int, default=5000,
                   help="sequences per cold book call: the book's workflow asks for 5,000 "
                        "(5 GB of float64 at size 50); smaller calls are faster per sequence")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", type=Path, help="also write the figures to this file")
    args = p.parse_args()
    malloc.keep_buffers_on_heap()
    with tempfile.TemporaryDirectory(prefix="genbench-") as tmp:
        scratch = Path(tmp)
        memory = memory_rows(args.size, scratch)
        cold = book_cold_rate(args.size, args.book_samples, args.repeats)
        warm = book_warm_rate(args.size, 200, args.repeats)
        codec_results = codec_rows(args.size, args.samples, args.repeats, scratch)
        shards = shard_size_rows(args.size, (500, 2000, 10000), args.repeats, scratch)
    print(f"size {args.size}; samples/s per core, median [p10-p90] of {args.repeats}\n")
    for name, r in (("cold, one call in a fresh process, as the book runs it", cold),
                    ("warm, repeated 200-sequence calls", warm)):
        print(f"book generate_examples ({name}): {spread(r['median'], r['p10'], r['p90'])}")
    codec_table = [[f"{r['codec']}{' (default)' if r['codec'] == codecs.DEFAULT_CODEC else ''}",
                    spread(r["write"]["median"], r["write"]["p10"], r["write"]["p90"]),
                    ratio(r["write"]["median"], cold["median"]), ratio(r["write"]["median"], warm["median"]),
                    number(r["bytes_per_sample"]), f"{r['ratio']:.0f}x", number(r["read"]["median"])]
                   for r in codec_results]
    shard_table = [[f"{r['shard_size']:,}", spread(r["write"]["median"], r["write"]["p10"], r["write"]["p90"])]
                   for r in shards]
    memory_table = [[f"{r['sequences']:,}", r["shard_size"], f"{r['peak_worker_rss_mib']:.0f} MiB"] for r in memory]
    for header, body in ((["codec", "write samples/s", "x book cold", "x book warm", "bytes/sample", "ratio",
                           "read samples/s (h5py, 1 thread)"], codec_table),
                         (["shard size", "write samples/s (nbit-gzip, 10,000 sequences per timing)"], shard_table),
                         (["sequences", "shard size", "peak worker RSS"], memory_table)):
        print("\n" + "\n".join(table(header, body)))
    if args.json:
        args.json.write_text(json.dumps({"size": args.size, "book_cold": cold, "book_warm": warm,
                                         "codecs": codec_results, "shard_sizes": shards, "memory": memory}, indent=1))


if __name__ == "__main__":
    main()
