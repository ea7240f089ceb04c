"""The garbage collector's pace in the long-running processes (`slackrouter run` and `work`).

CPython looks for reference cycles in its youngest objects each time 700 more container objects
have been made than freed. A busy web process makes that many in a handful of requests (each
request's scope, headers, task, models and answer), nearly all of them freed at once by
reference counting; the collector then walks every young object that is still alive, and with
hundreds of requests in flight (each waiting for the worker process) that is thousands of
objects, a few hundred times a second. Collecting every 10,000 makes the walks rarer for the
same garbage: at saturation the web process took 0.30-0.34 ms of CPU a message with CPython's
default and 0.25-0.27 with this (`python -m bench --only ingest`, SQLite, alternating runs;
thresholds of 50,000 and 100,000 did no better). Cycles are still collected, a little later.
"""

from __future__ import annotations

import gc

YOUNGEST = 10_000  # net new container objects between collections of the youngest generation


def collect_less_often() -> None:
    gc.set_threshold(YOUNGEST, 10, 10)
