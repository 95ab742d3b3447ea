"""Malformed input, property-based: CLI arguments of generate/verify/show and mutated manifests.

Every bad input must end in a clear error (exit 2 and one line for bad arguments; exit 1 or 2 and one
line, or one line per bad file, for bad datasets), never a traceback and never a partial write.
Commands run in-process through `pipeline.cli.main` with stdout/stderr captured; an exception escaping
`main` is the traceback a user would see.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.cli import main

pytestmark = pytest.mark.faults

SETTINGS = settings(max_examples=int(os.environ.get("FAULTS_EXAMPLES", "60")), deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
_TALLY = []


@pytest.fixture(autouse=True)
def _tally(tally):
    _TALLY[:] = [tally]


def run_main(argv, cwd: Path):
    """(exit status, stdout, stderr) of `main(argv)` run in `cwd`; exceptions propagate (= a traceback)."""
    out, err = io.StringIO(), io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([str(a) for a in argv])
            except SystemExit as e:  # argparse
                code = e.code
    finally:
        os.chdir(old)
    return code, out.getvalue(), err.getvalue()


def tree(directory: Path) -> dict:
    return {str(p.relative_to(directory)): p.read_bytes() if p.is_file() else None
            for p in sorted(directory.rglob("*"))}


# ---------------------------------------------------------------- generate / verify / show arguments

# No control or line-separator characters: a path with a newline in it would make any message two lines.
text = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), max_size=12)
not_an_int = st.one_of(st.integers(min_value=10**9 + 1, max_value=10**30),
                       text.filter(lambda s: not s.strip().lstrip("+-").isdigit()),
                       st.floats(allow_nan=True).map(repr))
bad_int = st.one_of(st.integers(max_value=0), not_an_int)  # for counts that must be positive
bad_count = st.one_of(st.integers(max_value=-1), not_an_int)  # --test-samples: 0 is a train-only dataset
any_int = st.one_of(st.integers(min_value=-10, max_value=300), bad_int)
BAD_GENERATE = st.one_of(
    st.tuples(st.just("--size"), st.one_of(st.integers(max_value=1), st.integers(min_value=257), text)),
    st.tuples(st.just("--samples"), bad_int),
    st.tuples(st.just("--test-samples"), bad_count),
    st.tuples(st.just("--shard-size"), bad_int),
    st.tuples(st.just("--chunk"), bad_int),
    st.tuples(st.just("--seed"), st.one_of(st.integers(max_value=-1), text.filter(lambda s: not s.strip().isdigit()))),
    st.tuples(st.just("--variant"), text.filter(lambda s: s not in ("trail", "dot", "square"))),
    st.tuples(st.just("--codec"),
              text.filter(lambda s: s not in ("zstd-fast", "zstd", "lz4", "blosc-lz4", "gzip", "none"))),
    st.tuples(st.just("--workers"), st.one_of(st.integers(max_value=0), st.integers(min_value=1025))),
    st.tuples(st.sampled_from(["--bogus", "--sizes", "-x", "--samples=1=2"]), text),
)
OTHER_GENERATE = st.lists(st.tuples(st.sampled_from(["--size", "--samples", "--test-samples", "--shard-size",
                                                      "--chunk", "--seed", "--square", "--workers"]), any_int),
                          max_size=4)


@SETTINGS
@given(bad=BAD_GENERATE, other=OTHER_GENERATE, flags=st.lists(st.sampled_from(["--wrap", "--overwrite", "--quiet"])))
def test_generate_bad_arguments(bad, other, flags):
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        argv = ["generate", "--out", scratch / "out", "--quiet", *flags]
        for option, value in [*other, bad]:  # the bad one last: argparse keeps the last value of an option
            argv += [f"{option}={value}"] if str(value).startswith("-") else [option, value]
        code, out, err = run_main(argv, scratch)
        lines = err.strip().splitlines()
        ok = code == 2 and len(lines) == 1 and "error" in lines[0] and tree(scratch) == {}
        _TALLY[0]("malformed input: generate arguments", ok, 0)
        assert ok, (argv, code, err, tree(scratch))


VERIFY_ARGS = st.one_of(
    st.tuples(st.just("--regenerate"),
              st.one_of(st.integers(max_value=-1), text.filter(lambda s: not s.strip().lstrip("+").isdigit()))),
    st.tuples(st.just("--seed"), text.filter(lambda s: not s.strip().lstrip("+-").isdigit())),
    st.tuples(st.just("DIR"), text.filter(lambda s: s.strip() and not s.startswith("-"))),
)


@SETTINGS
@given(bad=VERIFY_ARGS)
def test_verify_bad_arguments(bad, tiny_dataset):
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        option, value = bad
        if option == "DIR":  # a directory that does not exist (relative to an empty cwd)
            argv = ["verify", "--quiet", "--", f"missing-{value}"]
        else:
            argv = ["verify", tiny_dataset, "--quiet", f"{option}={value}"]
        code, out, err = run_main(argv, scratch)
        lines = err.strip().splitlines()
        ok = code == 2 and len(lines) == 1 and tree(scratch) == {}
        _TALLY[0]("malformed input: verify arguments", ok, 0)
        assert ok, (argv, code, err)


SHOW_ARGS = st.one_of(
    st.tuples(st.just("--index"), st.one_of(st.integers(max_value=-1), st.integers(min_value=96), text)),
    st.tuples(st.just("--split"), text.filter(lambda s: s not in ("train", "test"))),
    st.tuples(st.just("--columns"), st.one_of(st.integers(max_value=0), text)),
    st.tuples(st.just("--out"), st.one_of(text.map(lambda s: f"{s}.jpg"), text.map(lambda s: f"no-such-dir/{s}.png"))),
)


@SETTINGS
@given(bad=SHOW_ARGS)
def test_show_bad_arguments(bad, tiny_dataset):
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        option, value = bad
        argv = ["show", tiny_dataset, f"{option}={value}"]
        if option != "--out":
            argv += ["--out", "seq.png"]
        code, out, err = run_main(argv, scratch)
        lines = err.strip().splitlines()
        ok = code == 2 and len(lines) == 1 and tree(scratch) == {}
        _TALLY[0]("malformed input: show arguments", ok, 0)
        assert ok, (argv, code, err)


# ---------------------------------------------------------------- mutated manifests

junk = st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**20, max_value=10**20), st.floats(allow_nan=True),
                 text, st.lists(st.integers(), max_size=3), st.dictionaries(text, st.integers(), max_size=2))


@st.composite
def mutated_manifest(draw, doc):
    """A valid manifest document with one to three random mutations; returns (text, description)."""
    doc = copy.deepcopy(doc)
    done = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["set", "delete", "shuffle", "negative", "garbage", "toplevel"]))
        # walk to a random container
        node, path = doc, []
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
            if not isinstance(node[key], (dict, list)):
                break
            node, path = node[key], path + [key]
        if not isinstance(node, (dict, list)) or not node:
            continue
        key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
        if kind == "set":
            node[key] = draw(junk)
        elif kind == "delete":
            del node[key]
        elif kind == "negative":
            node[key] = -abs(node[key]) - 1 if isinstance(node[key], int) and not isinstance(node[key], bool) else -1
        elif kind == "shuffle":
            splits = doc.get("splits") if isinstance(doc, dict) else None
            splits = splits.values() if isinstance(splits, dict) else []
            lists = [s["shards"] for s in splits if isinstance(s, dict) and isinstance(s.get("shards"), list)]
            if lists and len(lists[0]) > 1:
                lists[0][:] = draw(st.permutations(lists[0]))
        elif kind == "garbage":
            raw = json.dumps(doc)
            cut = draw(st.integers(0, len(raw)))
            return raw[:cut] + draw(st.sampled_from(["", "}", "\x00", "\ufffd", "{{", "garbage"])), done + ["garbage"]
        elif kind == "toplevel":
            return json.dumps(draw(junk)), done + ["toplevel"]
        done.append(f"{kind} {path + [key]}")
    return json.dumps(doc), done


@pytest.fixture(scope="module")
def manifest_doc(tiny_dataset):
    return json.loads((tiny_dataset / "manifest.json").read_text())


@SETTINGS
@given(data=st.data())
def test_mutated_manifest_gives_a_clear_error(data, tiny_dataset, manifest_doc):
    raw, what = data.draw(mutated_manifest(manifest_doc))
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        d = scratch / "d"
        shutil.copytree(tiny_dataset, d)
        (d / "manifest.json").write_text(raw)
        before = tree(d)
        results = {}
        for argv in (["verify", d, "--quiet"], ["show", d, "--out", scratch / "s.png"]):
            code, out, err = run_main(argv, scratch)
            results[argv[0]] = (code, out, err)
            changed = json.loads(raw) != manifest_doc if _is_json(raw) else True
            if code == 0:
                # accepted: only a harmless edit (e.g. a shard list order the loader re-sorts) may pass verify
                ok = argv[0] == "show" or not changed or _equivalent(raw, manifest_doc)
            elif code in (1, 2):
                err_lines = err.strip().splitlines()
                out_lines = out.strip().splitlines()
                ok = (len(err_lines) == 1 and "manifest.json" in err_lines[0]) or (
                    not err_lines and out_lines and all(line.startswith(str(d)) for line in out_lines))
            else:
                ok = False
            ok = ok and tree(d) == before
            _TALLY[0](f"malformed input: mutated manifest ({argv[0]})", ok, 0)
            assert ok, (what, raw[:300], code, out[-500:], err[-500:])


def _is_json(raw: str) -> bool:
    try:
        json.loads(raw)
        return True
    except ValueError:
        return False


def _equivalent(raw: str, doc: dict) -> bool:
    """Edits that do not change what the manifest says about the data (storage statistics, truthy `complete`)."""
    new = json.loads(raw)
    if not isinstance(new, dict):
        return False
    a, b = dict(new), dict(doc)
    a.pop("storage", None), b.pop("storage", None)
    if a.get("complete") and b.get("complete"):
        a["complete"] = b["complete"] = True
    for d in (a, b):
        for s in (d.get("splits") or {}).values():
            if isinstance(s, dict):
                for e in s.get("shards") or []:
                    if isinstance(e, dict):
                        e.pop("bytes", None)  # verify checks the file itself, not the recorded length
    return a == b


@SETTINGS
@given(data=st.data())
def test_generate_on_a_mutated_manifest_refuses_or_repairs(data, tiny_dataset, manifest_doc):
    """`generate` with the dataset's own parameters over a damaged manifest: refuse (exit 2, one line,
    nothing changed) or end with a dataset that verifies. Only cheap outcomes are run (no regeneration)."""
    raw, what = data.draw(mutated_manifest(manifest_doc))
    p = manifest_doc["params"]
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        d = scratch / "d"
        shutil.copytree(tiny_dataset, d)
        (d / "manifest.json").write_text(raw)
        from pipeline.dataset.manifest import load_manifest
        from pipeline.errors import DataError
        try:
            loaded = load_manifest(d)
        except DataError:
            loaded = None
        except Exception as e:  # noqa: BLE001 -- a crash here is what the test reports
            pytest.fail(f"load_manifest raised {type(e).__name__}: {e} on {what}")
        if loaded is not None:
            return  # a loadable manifest may resume generation (slow); covered by the kill trials
        before = tree(d)
        argv = ["generate", "--out", d, "--quiet", "--workers", 1,
                *[a for k in ("size", "samples", "test_samples", "shard_size", "chunk", "seed")
                  for a in (f"--{k.replace('_', '-')}", p[k])]]
        code, out, err = run_main(argv, scratch)
        lines = err.strip().splitlines()
        ok = code == 2 and len(lines) == 1 and "--overwrite" in lines[0] and tree(d) == before
        _TALLY[0]("malformed input: generate over a mutated manifest", ok, 0)
        assert ok, (what, code, err)
