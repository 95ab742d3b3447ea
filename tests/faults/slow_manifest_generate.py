"""`python -m pipeline generate ...` with a pause inside every manifest update, to aim SIGKILL at that window.

The real `Manifest.save` runs unchanged; only its final `os.replace` is delayed. Just before the pause
this touches `$FAULTS_SENTINEL_DIR/manifest-<n>` so a test can kill the process while the new manifest
exists only as `manifest.json.tmp-<pid>`.
"""
import os
import sys
import time
import types

import pipeline.generate
import pipeline.manifest

_real_os = os
_count = [0]


def _slow_replace(src, dst):
    if str(dst).endswith("manifest.json"):
        _count[0] += 1
        sentinel = _real_os.path.join(_real_os.environ["FAULTS_SENTINEL_DIR"], f"manifest-{_count[0]}")
        open(sentinel, "w").close()
        time.sleep(float(_real_os.environ.get("FAULTS_MANIFEST_PAUSE", "0.3")))
    return _real_os.replace(src, dst)


proxy = types.SimpleNamespace(**{name: getattr(os, name) for name in dir(os) if not name.startswith("__")})
proxy.replace = _slow_replace
pipeline.manifest.os = proxy
pipeline.generate.RECORD_INTERVAL_S = 0  # an update per shard, so every update can be a target

if __name__ == "__main__":
    from pipeline.cli import main

    raise SystemExit(main(sys.argv[1:]))
