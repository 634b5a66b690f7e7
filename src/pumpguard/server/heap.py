"""Keep CPython's garbage collector off the long-lived heap of a started server.

A full (generation 2) collection walks every object the collector tracks, holding the GIL: it
stops the event loop and every worker thread of the process until it is done. A started
``Stack`` holds some 230,000 tracked objects that live as long as the process (modules,
classes, functions, SQLAlchemy, pydantic and hl7apy metadata); walking them took 150-400 ms
on the 2-core machine of ``pumpguard bench autoprogram``. hl7apy leaves cyclic garbage behind
every message it parses or builds, so such collections came every 10-20 s and each one held up
whatever order was in flight: they were most of the order-to-pre-fill p99 (docs/interop.md).
Moving what exists once start-up is over into the permanent generation (``gc.freeze``) leaves
later collections with what was allocated since: 10-40 ms measured in the same bench.
"""

from __future__ import annotations

import gc
import threading

__all__ = ["freeze_startup_heap"]

_lock = threading.Lock()
_frozen = False


def freeze_startup_heap() -> bool:
    """Collect once, then leave every surviving object out of all later collections.

    Once per process (later calls return False): a frozen object is never collected, so a
    reference cycle among frozen objects that dies later (a first ``Stack`` stopped in a
    process that starts another) stays in memory; that bounded, one-time cost is why it is
    not repeated."""
    global _frozen
    with _lock:
        if _frozen:
            return False
        gc.collect()
        gc.freeze()
        _frozen = True
        return True
