"""A dataset's `manifest.json`: its parameters, its shards, their counts and SHA-256.

Layout of a dataset directory::

    DIR/manifest.json        this file, replaced atomically
    DIR/train-00000.h5 ...   shards, see pipeline.dataset.shards
    DIR/test-00000.h5 ...
    DIR/.lock                held by the generator while it runs

The manifest is written before the first shard (``complete: false``, every shard's
``sha256`` null), updated as each shard lands, and marked complete at the end.
It carries no timestamps: the same parameters give the same manifest bytes.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from pipeline.dataset import codecs
from pipeline.dataset.shards import FORMAT_VERSION, ShardPlan, is_shard_name
from pipeline.dataset.synth import SequenceSpec
from pipeline.errors import DataError

MANIFEST = "manifest.json"
FORMAT = "moving-square-hdf5"
SPLITS = ("train", "test")
MAX_SAMPLES = 10**9
# Each shard costs a fixed amount of work (file, attributes, fsync, rename, its Dask task) on top of its
# sequences: small shards spend much of a run on it. 2,000 keeps that small and still gives a default
# dataset several shards to write in parallel.
DEFAULT_SHARD_SIZE = 2000


@dataclass(frozen=True)
class DatasetParams:
    """Every parameter that determines a dataset's bytes; validates itself.

    samples / test_samples: sequences in the train / test split; test_samples 0 makes a train-only
        dataset (its test split lists no shards).
    shard_size: sequences per shard (the last shard of a split may hold fewer); None means
        DEFAULT_SHARD_SIZE, or the whole train split if that is smaller.
    chunk: sequences per HDF5 chunk of `frames`.
    """

    size: int = 50
    variant: str = "trail"
    square: int = 3
    wrap: bool = False
    seed: int = 0
    samples: int = 5000
    test_samples: int = 1000
    shard_size: int | None = None
    chunk: int = codecs.DEFAULT_CHUNK
    codec: str = codecs.DEFAULT_CODEC

    def __post_init__(self):
        _ = self.spec  # validates size, variant, square
        if self.shard_size is None and isinstance(self.samples, int):
            object.__setattr__(self, "shard_size", min(DEFAULT_SHARD_SIZE, max(1, self.samples)))
        for name in ("samples", "test_samples", "shard_size", "chunk"):
            value, least = getattr(self, name), 0 if name == "test_samples" else 1
            if not isinstance(value, int) or isinstance(value, bool) or not least <= value <= MAX_SAMPLES:
                what = "a non-negative" if least == 0 else "a positive"
                raise ValueError(f"{name.replace('_', '-')} must be {what} integer (at most {MAX_SAMPLES:,}), "
                                 f"got {value!r}")
        if self.shard_size > self.samples:
            raise ValueError(f"shard-size ({self.shard_size}) is larger than the train split ({self.samples} samples)")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.codec not in codecs.CODECS:
            raise ValueError(f"codec must be one of {', '.join(codecs.CODECS)}, got {self.codec!r}")

    @property
    def spec(self) -> SequenceSpec:
        return SequenceSpec(self.size, self.variant, self.square if self.variant == "square" else 1, self.wrap)

    def split_samples(self, split: str) -> int:
        return self.samples if split == "train" else self.test_samples

    def plans(self) -> list[ShardPlan]:
        """Every shard of both splits, in manifest order."""
        out, spec = [], self.spec
        for split in SPLITS:
            total = self.split_samples(split)
            for index, first in enumerate(range(0, total, self.shard_size)):
                out.append(ShardPlan(split, index, first, min(self.shard_size, total - first), self.seed,
                                     spec, min(self.chunk, self.shard_size), self.codec))
        return out


@dataclass
class Manifest:
    """In-memory manifest. `shards[split]` lists dicts: path, first_sample, samples, sha256, bytes."""

    params: DatasetParams
    shards: dict[str, list[dict]] = field(default_factory=dict)
    complete: bool = False

    @classmethod
    def planned(cls, params: DatasetParams) -> Manifest:
        shards = {split: [] for split in SPLITS}
        for plan in params.plans():
            shards[plan.split].append({"path": plan.name, "first_sample": plan.first_sample,
                                       "samples": plan.samples, "sha256": None, "bytes": None})
        return cls(params, shards)

    def entry(self, split: str, name: str) -> dict:
        return next(e for e in self.shards[split] if e["path"] == name)

    def to_json(self) -> dict:
        raw = self.params.size ** 3
        stored = sum(e["bytes"] or 0 for s in SPLITS for e in self.shards[s])
        done = sum(e["samples"] for s in SPLITS for e in self.shards[s] if e["sha256"])
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "complete": self.complete,
            "params": asdict(self.params),
            "storage": {"codec": self.params.codec, "chunk_samples": self.params.chunk,
                        "filter": codecs.describe(self.params.codec),
                        "raw_bytes_per_sample": raw,
                        "stored_bytes_per_sample": round(stored / done, 1) if done else None},
            "splits": {split: {"samples": self.params.split_samples(split), "shards": self.shards[split]}
                       for split in SPLITS},
        }

    def save(self, directory: Path) -> None:
        """Write DIR/manifest.json atomically (temporary file, fsync, rename)."""
        path = Path(directory) / MANIFEST
        tmp = path.with_name(f"{MANIFEST}.tmp-{os.getpid()}")
        try:
            with open(tmp, "w") as f:
                json.dump(self.to_json(), f, indent=1)
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def load_manifest(directory: Path) -> Manifest:
    """Read and check DIR/manifest.json; DataError naming the file if it is missing or malformed."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise DataError(f"{path}: missing (not a dataset directory?)")
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict):
            raise ValueError(f"expected a JSON object, found {type(doc).__name__}")
        if doc.get("format") != FORMAT or doc.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"format {doc.get('format')!r} version {doc.get('format_version')!r} "
                             f"is not {FORMAT!r} version {FORMAT_VERSION}")
        params = DatasetParams(**doc["params"])
        # a split with no samples may be left out of "splits"
        shards = {split: list(doc["splits"][split]["shards"]) if split in doc["splits"] or params.split_samples(split)
                  else [] for split in SPLITS}
        manifest = Manifest(params, shards, bool(doc["complete"]))
        expected = Manifest.planned(params).shards
        for split in SPLITS:
            planned = [(e["path"], e["first_sample"], e["samples"]) for e in expected[split]]
            found = [(e["path"], e["first_sample"], e["samples"]) for e in shards[split]]
            if planned != found:
                raise ValueError(f"{split} shard list disagrees with the parameters")
        return manifest
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: malformed manifest ({e})") from None


def listed_shards(directory: Path) -> set[str]:
    """Shard file names DIR/manifest.json lists, read leniently (a manifest `load_manifest` refuses still names
    the files its generator wrote); only names a shard can have, so a hand-edited path never leaves DIR."""
    try:
        doc = json.loads((Path(directory) / MANIFEST).read_text())
        entries = [e for split in doc["splits"].values() for e in split["shards"]]
        return {e["path"] for e in entries if isinstance(e.get("path"), str) and is_shard_name(e["path"])}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return set()


def manifest_sha256(directory: Path) -> str:
    """SHA-256 of DIR/manifest.json: identifies a dataset in benchmark results."""
    import hashlib

    return hashlib.sha256((Path(directory) / MANIFEST).read_bytes()).hexdigest()
