"""Progress lines on stderr, stamped with seconds since the bench was imported."""
from __future__ import annotations

import sys
import time

_T0 = time.monotonic()


def log(message: str) -> None:
    print(f"bench [{time.monotonic() - _T0:6.1f} s]: {message}", file=sys.stderr, flush=True)
