"""How much training the `wrap` variant needs: accuracy after each further 5,000 fresh sequences.

In the book's task the first frame gives the direction away (the first pixel sits in the first or
last column); with `wrap=True` the path starts in a random column and wraps, so no single frame
does. This trains `fast` (batch 32) on rounds of 5,000 fresh wrap sequences and, after each round,
measures accuracy on held-out wrap sequences, until it reaches --target or --max-rounds.

    .venv/bin/python bench/wrap_budget.py [--sizes 10,25,50] [--max-rounds 10] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from pipeline.results.markdown import table

ROUND = 5000


def accuracy(model, size: int, n: int, rng: np.random.Generator) -> float:
    from pipeline.dataset.synth import SequenceSpec, generate

    held = generate(rng, n, SequenceSpec(size, wrap=True))
    p = model.predict(held.frames, batch_size=250, verbose=0)[:, 0]
    return float(((p > 0.5) == (held.labels == 1)).mean())


def budget(size: int, max_rounds: int, target: float, heldout: int) -> list[dict]:
    import keras

    from pipeline.dataset.synth import SequenceSpec, generate
    from pipeline.models.networks import build_model

    keras.utils.set_random_seed(size)
    model = build_model("fast", size)
    rows, spent = [], 0.0
    for r in range(1, max_rounds + 1):
        train = generate(np.random.default_rng([size, 10 + r]), ROUND, SequenceSpec(size, wrap=True))
        start = time.perf_counter()
        model.fit(train.frames, train.labels, batch_size=32, epochs=1, verbose=0)
        spent += time.perf_counter() - start
        acc = accuracy(model, size, heldout, np.random.default_rng([size, 3]))
        rows.append({"size": size, "sequences_seen": ROUND * r, "heldout": heldout, "accuracy": acc,
                     "fit_s_cumulative": round(spent, 1)})
        print(json.dumps(rows[-1]), flush=True)
        if acc >= target:
            break
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="10,25,50", help="comma-separated image sizes")
    p.add_argument("--max-rounds", type=int, default=10, help="rounds of 5,000 fresh sequences at most")
    p.add_argument("--target", type=float, default=0.99, help="stop a size once held-out accuracy reaches this")
    p.add_argument("--heldout", type=int, default=2000, help="held-out wrap sequences per check")
    p.add_argument("--json", help="write all rows to this file")
    args = p.parse_args()
    rows = [row for size in map(int, args.sizes.split(",")) for row in budget(size, args.max_rounds, args.target,
                                                                              args.heldout)]
    print("\n" + "\n".join(table(["size", "sequences seen", "held-out accuracy"],
                                  [[r["size"], f"{r['sequences_seen']:,}", f"{r['accuracy']:.2%}"] for r in rows],
                                  "rrr")))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
