"""`show`: one sequence's frames side by side with its label, as the book's figure."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from pipeline.dataset.manifest import SPLITS, load_manifest
from pipeline.dataset.shards import read_sequences
from pipeline.errors import UsageError, positive_int


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("directory", type=Path, help="dataset directory")
    p.add_argument("--index", type=int, default=0, help="sequence index within the split")
    p.add_argument("--split", default="train", choices=SPLITS)
    p.add_argument("--out", type=Path, default=Path("sequence.png"), help="PNG file to write")
    p.add_argument("--columns", type=positive_int, default=10, help="frames per row of the figure")


def load_sequence(directory: Path, split: str, index: int) -> dict:
    """frames uint8 (T, S, S), label, rows (T,) of sequence `index` of `split`."""
    manifest = load_manifest(directory)
    total = manifest.params.split_samples(split)
    if total == 0:
        raise UsageError(f"the {split} split of {directory} is empty (generated with no {split} samples)")
    if not 0 <= index < total:
        raise UsageError(f"--index must be in 0..{total - 1} for the {split} split, got {index}")
    entry = next(e for e in manifest.shards[split] if e["first_sample"] <= index < e["first_sample"] + e["samples"])
    offset = index - entry["first_sample"]
    data = read_sequences(directory / entry["path"], offset, offset + 1)
    return {"frames": data["frames"][0], "label": int(data["labels"][0]), "rows": data["rows"][0]}


def plot_sequence(frames: np.ndarray, label: int, title: str, out: Path, columns: int = 10) -> None:
    """Save frames (T, S, S) as a grid of `columns` frames per row, titled with the direction."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    steps = frames.shape[0]
    columns = min(columns, steps)
    rows = -(-steps // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.2 * columns, 1.3 * rows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for t in range(steps):
        ax = axes.flat[t]
        ax.axis("on")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_color("0.7")
        ax.imshow(frames[t], cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"t={t}", fontsize=7)
    fig.suptitle(f"{title}: {'Right (left-to-right)' if label else 'Left (right-to-left)'}")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def run(args) -> int:
    if args.out.suffix.lower() != ".png":
        raise UsageError(f"--out must name a .png file, got {args.out}")
    if not args.out.absolute().parent.is_dir():
        raise UsageError(f"--out {args.out}: directory {args.out.parent} does not exist")
    seq = load_sequence(args.directory, args.split, args.index)
    title = f"{args.directory.name} {args.split}[{args.index}]"
    plot_sequence(seq["frames"], seq["label"], title, args.out, args.columns)
    print(f"{args.out}: {args.split}[{args.index}], {'Right' if seq['label'] else 'Left'}, rows {seq['rows'].tolist()}")
    return 0
