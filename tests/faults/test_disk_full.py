"""Disk full mid-run, on a real filesystem: a small tmpfs (needs root and `mount`; skipped otherwise).

The generator must stop with a one-line error (non-zero exit, no traceback), leave no shard or manifest
that claims more than was written, and, once the filesystem is remounted bigger, a rerun of the same
command must complete, verify and match an uninterrupted run byte for byte.
"""
from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from faultlib import bytes_lost, file_bytes
from helpers import cli, manifest_hashes
from pipeline.dataset.manifest import load_manifest
from pipeline.dataset.shards import check_shard

pytestmark = pytest.mark.faults

# codec none: 32 KiB per sequence, so a 2-3 MiB filesystem fills after a few shards.
ARGS = ["--size", 32, "--samples", 200, "--test-samples", 20, "--shard-size", 10, "--chunk", 10, "--codec", "none",
        "--seed", 5, "--quiet"]


@pytest.fixture
def small_fs(tmp_path):
    mountpoint = tmp_path / "fs"
    mountpoint.mkdir()

    def mount(size: str, remount: bool = False):
        opts = f"remount,size={size}" if remount else f"size={size}"
        return subprocess.run(["mount", "-t", "tmpfs", "-o", opts, f"faults-{uuid.uuid4().hex[:8]}", str(mountpoint)],
                              capture_output=True, text=True)

    r = mount("2M")
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        yield mountpoint, mount
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("diskfull") / "reference"
    r = cli("generate", "--out", out, *ARGS, "--workers", 1)
    assert r.returncode == 0, r.stderr
    return out


@pytest.mark.parametrize("fs_size,workers", [("2M", 2), ("3M", 1), ("1M", 2)])
def test_disk_full_clean_error_then_rerun_after_space_is_freed(fs_size, workers, small_fs, reference, tally):
    mountpoint, mount = small_fs
    if fs_size != "2M":
        assert mount(fs_size, remount=True).returncode == 0
    out = mountpoint / "d"
    r = cli("generate", "--out", out, *ARGS, "--workers", workers)
    err_lines = r.stderr.strip().splitlines()
    clean_error = (r.returncode != 0 and "Traceback" not in r.stderr and len(err_lines) == 1
                   and "No space left on device" in r.stderr)

    # Nothing claims completeness: the manifest (if any) is incomplete, and records only whole, correct shards.
    ref_hashes, ref_files = manifest_hashes(reference), file_bytes(reference)
    honest = True
    if (out / "manifest.json").exists():
        doc = json.loads((out / "manifest.json").read_text())
        honest &= doc["complete"] is False
        honest &= all(e["sha256"] in (None, ref_hashes[e["path"]]) for s in doc["splits"].values() for e in s["shards"])
    plans = {plan.name: plan for plan in load_manifest(reference).params.plans()}
    for shard in out.glob("*.h5"):
        check_shard(shard, plans[shard.name])
        honest &= shard.read_bytes() == ref_files[shard.name]

    assert mount("64M", remount=True).returncode == 0
    rerun = cli("generate", "--out", out, *ARGS, "--workers", workers)
    verified = cli("verify", out, "--quiet")
    lost = bytes_lost(reference, out) if rerun.returncode == 0 else sum(map(len, ref_files.values()))
    survived = clean_error and honest and rerun.returncode == 0 and verified.returncode == 0 and lost == 0
    tally("disk full (tmpfs)", survived, lost, clean_error=clean_error)
    assert honest, "a shard or manifest claims more than was written"
    assert rerun.returncode == 0 and verified.returncode == 0 and lost == 0, (rerun.stderr, verified.stdout)
    assert clean_error, f"exit {r.returncode}, stderr:\n{r.stderr[-3000:]}"
