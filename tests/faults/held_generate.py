"""`python held_generate.py generate ...`: the real command, paused inside its manifest updates.

The real `Manifest.save` runs unchanged; only its final `os.replace` is delayed. Just before that
rename, update n touches `$FAULTS_SENTINEL_DIR/manifest-<n>`, so a test can act while the new manifest
exists only as `manifest.json.tmp-<pid>` and the generator holds DIR/.lock. Then:

* if n is `$FAULTS_HOLD_AT`, it waits until the file `$FAULTS_RELEASE` exists (at most 300 s), so a test
  can do something while the generator is certainly still running (or kill it there);
* otherwise it sleeps `$FAULTS_MANIFEST_PAUSE` seconds (default 0.3), a window to aim SIGKILL at.

The manifest is updated once per shard here, so that every update can be a target.
"""
import os
import sys
import time
import types

import pipeline.dataset.generate
import pipeline.dataset.manifest

_real_os = os
_count = [0]


def _held_replace(src, dst):
    if str(dst).endswith("manifest.json"):
        _count[0] += 1
        env = _real_os.environ
        sentinel = _real_os.path.join(env["FAULTS_SENTINEL_DIR"], f"manifest-{_count[0]}")
        open(sentinel, "w").close()
        if env.get("FAULTS_HOLD_AT") == str(_count[0]):
            deadline = time.monotonic() + 300
            while not _real_os.path.exists(env["FAULTS_RELEASE"]) and time.monotonic() < deadline:
                time.sleep(0.01)
        else:
            time.sleep(float(env.get("FAULTS_MANIFEST_PAUSE", "0.3")))
    return _real_os.replace(src, dst)


proxy = types.SimpleNamespace(**{name: getattr(os, name) for name in dir(os) if not name.startswith("__")})
proxy.replace = _held_replace
pipeline.dataset.manifest.os = proxy
pipeline.dataset.generate.RECORD_INTERVAL_S = 0

if __name__ == "__main__":
    from pipeline.cli import main

    raise SystemExit(main(sys.argv[1:]))
