"""`fast`'s switches side by side with the book workflow: ms per training step, one process.

    .venv/bin/python bench/fast_ablation.py [--size 50] [--batch 32] [--steps 15]

Every model trains on the same batches with `train_on_batch` (each step materialized); steps of
all models are interleaved so machine noise hits them alike; 3 warm-up steps each (compilation
included there). The book workflow trains its own float64 5-D arrays from `generate_examples`.
Prints a Markdown table: median [p10-p90] ms per step and the ratio to the book workflow.
"""
from __future__ import annotations

import argparse
import random
import time

import numpy as np

from pipeline.bench.timing import Summary
from pipeline.results.markdown import table


def variants(size: int) -> dict:
    from pipeline.models.book_workflow import build_book_model
    from pipeline.models.networks import build_model
    from pipeline.models.variants import build_fast_variant

    return {
        "book workflow": build_book_model(size),
        "book": build_model("book", size),
        "fast (as built for this device)": build_model("fast", size),
        "fast, lookup CNN, XLA off": build_fast_variant(size, cnn="lookup", jit_compile=False),
        "fast, ConvPool CNN, XLA on": build_fast_variant(size, cnn="fused", jit_compile=True),
        "fast, ConvPool CNN, XLA off": build_fast_variant(size, cnn="fused", jit_compile=False),
        "fast, Keras layers + Keras LSTM, XLA off": build_fast_variant(size, cnn="keras", lstm="keras",
                                                                      jit_compile=False),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=50)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=15)
    args = p.parse_args()
    from pipeline.dataset.synth import SequenceSpec, generate
    from pipeline.models.book_workflow import generate_examples

    size, b = args.size, args.batch
    ours = generate(np.random.default_rng(0), 4 * b, SequenceSpec(size))
    book_x, book_y = generate_examples(size, 2 * b, random.Random(0))
    batches = [(ours.frames[i * b:(i + 1) * b], ours.labels[i * b:(i + 1) * b].astype("float32")) for i in range(4)]
    book_batches = [(book_x[i * b:(i + 1) * b], book_y[i * b:(i + 1) * b]) for i in range(2)]
    models = variants(size)
    feed = {name: (book_batches if name == "book workflow" else batches) for name in models}
    times = {name: [] for name in models}
    for name, model in models.items():
        for i in range(3):
            model.train_on_batch(*feed[name][i % len(feed[name])])
    for step in range(args.steps):
        for name, model in models.items():
            x, y = feed[name][step % len(feed[name])]
            start = time.perf_counter()
            out = model.train_on_batch(x, y)
            float(np.asarray(out[0] if isinstance(out, list) else out))  # materialized
            times[name].append(time.perf_counter() - start)
    spreads = {name: Summary.of(ts).scaled(1e3) for name, ts in times.items()}
    base = spreads["book workflow"].median
    print("\n".join(table([f"model (size {size}, batch {b})", "ms/step median [p10-p90]", "vs book workflow"],
                          [[name, f"{s.median:.1f} [{s.p10:.1f}-{s.p90:.1f}]", f"{base / s.median:.2f}x"]
                           for name, s in spreads.items()])))


if __name__ == "__main__":
    main()
