"""A greenlet that measures how long the gevent hub goes without running it (for 'the hub is never blocked' tests)."""

import time

import gevent


def start_ticker(gaps: list, interval_s: float = 0.01) -> gevent.Greenlet:
    """Spawn a greenlet that sleeps ``interval_s`` in a loop and appends each real gap between wake-ups to ``gaps`` (s).

    A gap much longer than ``interval_s`` means something held the hub. Kill the greenlet when done.
    """

    def tick() -> None:
        last = time.perf_counter()
        while True:
            gevent.sleep(interval_s)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    return gevent.spawn(tick)
