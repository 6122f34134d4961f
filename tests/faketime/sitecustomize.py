"""Loaded only by processes a clock test runs under libfaketime (this folder on their PYTHONPATH).

With a faked wall clock, `time.sleep` fails (EINVAL) or hangs: libfaketime shifts the absolute
deadline it sleeps to. A wait on a condition uses the monotonic clock, which the tests leave
unfaked (FAKETIME_DONT_FAKE_MONOTONIC=1), so `time.sleep` becomes one.
"""

from __future__ import annotations

import threading
import time

_never_set = threading.Event()


def _sleep(seconds: float) -> None:
    _never_set.wait(max(0.0, seconds))


time.sleep = _sleep
