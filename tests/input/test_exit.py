"""A script that ends while iterators of any front end are alive exits promptly, with status 0."""
from __future__ import annotations

import subprocess
import textwrap
import time

import pytest

from helpers import PY, ROOT

# what each front end's script does before it ends with its iterator alive (the dataset path is argv[1])
SCRIPTS = {
    "tf.data": "from pipeline.input.loader import make_dataset\n"
               "it = iter(make_dataset(sys.argv[1], 'train', 8, repeat={repeat}, packed={packed}))",
    "numpy": "from pipeline.input.reader import batch_stream\n"
             "it = iter(batch_stream(sys.argv[1], 'train', 8, epochs=None, packed={packed}))",
    "jax": "from pipeline.input.jax_feed import prefetch_to_device\nfrom pipeline.input.reader import batch_stream\n"
           "it = prefetch_to_device(batch_stream(sys.argv[1], 'train', 8, epochs=None, packed={packed}))",
}
LIMIT_S = 60  # a hang runs into this; a clean exit takes the interpreter's start-up and teardown


@pytest.mark.parametrize("front_end, repeat, packed", [
    ("tf.data", False, False), ("tf.data", True, False), ("tf.data", True, True), ("numpy", None, False),
    ("jax", None, True)])
def test_a_script_ends_with_an_iterator_alive_and_exits(tiny_dataset, front_end, repeat, packed):
    if front_end == "jax":
        pytest.importorskip("jax")
    body = SCRIPTS[front_end].format(repeat=repeat, packed=packed)
    script = "import sys\n" + body + "\nfor _ in range(5):\n    next(it)\nprint('pulled', flush=True)\n"
    start = time.monotonic()
    try:
        done = subprocess.run([PY, "-c", textwrap.dedent(script), str(tiny_dataset)], capture_output=True, text=True,
                              timeout=LIMIT_S, cwd=ROOT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{front_end} (repeat={repeat}, packed={packed}): still running {LIMIT_S} s after its last line")
    assert done.returncode == 0 and done.stdout == "pulled\n", done.stderr[-2000:]
    assert time.monotonic() - start < LIMIT_S
