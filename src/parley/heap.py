"""The garbage collector of a ``parley serve`` process, set for a long-lived server whose start-up leaves a large
heap behind.

Start-up leaves about 300,000 tracked objects (the modules, the openai SDK's and Parley's pydantic models, the
store's metadata) that live as long as the process.  CPython's full collection walks every one of them: with its
default thresholds it ran every second or two under load, and each took 90-250 ms on the project's 2-core machine,
stopping every stream for that long; with the young collections, the collector took a tenth of the server's
CPU.  :func:`settle`, once the app has started, collects start-up's garbage, freezes the rest out of the collector
(``gc.freeze``: no collection walks it again, so a cycle among those objects would never be freed, and they live
as long as the process anyway) and raises the youngest generation's threshold, so that a request's short-lived
objects die by reference count before a collection looks at them.  ``bench/README.md`` ("The collector") has
the measurements.

Only the server's own processes settle: the in-process client (:mod:`parley.library`) lives in its caller's
process, whose collector is the caller's business.
"""

from __future__ import annotations

import gc

YOUNG = 10_000  # the youngest generation's threshold (CPython's default: 700)


def settle() -> None:
    """Collect what start-up left as garbage, freeze the rest, and raise the youngest generation's threshold."""
    gc.collect()
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, oldest)
