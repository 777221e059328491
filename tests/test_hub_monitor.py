"""The hub monitor measures real blocks of the gevent hub (this process is not monkey-patched:
``time.sleep`` in a greenlet blocks the hub, which runs in the same thread)."""

import logging
import sys
import time

import gevent
import pytest

from runtime import hub_monitor, metrics
from runtime.hub_monitor import HubMonitor

THRESHOLD_S = 0.05


@pytest.fixture
def monitor():
    m = HubMonitor(THRESHOLD_S, log_every_s=0)
    m.start()
    gevent.sleep(0.05)  # the heartbeat runs
    yield m
    m.stop()


def block_the_hub_for_200_ms():
    time.sleep(0.2)  # not patched: the whole thread, hub included, stops


def test_a_real_block_is_measured_with_its_duration_and_stack(monitor, caplog):
    assert monitor.beats >= 2 and monitor.blocks == 0
    with caplog.at_level(logging.WARNING, logger="runtime.hub_monitor"):
        block_the_hub_for_200_ms()
        gevent.sleep(0.05)  # the heartbeat wakes up late and reports
    assert monitor.blocks == 1
    # Resolution: B - interval_s <= measured <= B + jitter (the upper margin is for a loaded machine).
    assert 0.2 - monitor.interval_s - 0.002 <= monitor.max_block_s <= 0.26
    assert monitor.last_block_s == monitor.max_block_s
    assert "block_the_hub_for_200_ms" in monitor.last_stack and "time.sleep(0.2)" in monitor.last_stack
    [record] = [r for r in caplog.records if "gevent hub blocked" in r.getMessage()]
    assert "block_the_hub_for_200_ms" in record.getMessage()


def test_an_idle_hub_reports_no_block(monitor):
    gevent.sleep(0.5)
    assert monitor.beats >= 25  # it did run, about every 10 ms
    assert monitor.blocks == 0 and monitor.max_block_s == 0.0 and monitor.last_block_s is None


def test_blocks_under_the_threshold_are_not_counted(monitor):
    for _ in range(5):
        time.sleep(0.02)
        gevent.sleep(0.02)
    assert monitor.blocks == 0


def test_warnings_are_rate_limited_but_every_block_counts(caplog):
    seen = []
    m = HubMonitor(THRESHOLD_S, log_every_s=60, on_block=seen.append, capture_stacks=False)
    m.start()
    try:
        with caplog.at_level(logging.WARNING, logger="runtime.hub_monitor"):
            for _ in range(2):
                gevent.sleep(0.03)
                time.sleep(0.12)
                gevent.sleep(0.03)
    finally:
        m.stop()
    assert m.blocks == 2 and len(seen) == 2 and all(0.1 <= s <= 0.2 for s in seen)
    messages = [r.getMessage() for r in caplog.records if "gevent hub blocked" in r.getMessage()]
    assert len(messages) == 1 and "unknown" in messages[0]


def test_stop_ends_the_heartbeat_and_the_watchdog_thread():
    threads_before = len(sys._current_frames())
    m = HubMonitor(THRESHOLD_S)
    m.start()
    gevent.sleep(0.03)
    assert len(sys._current_frames()) == threads_before + 1
    m.stop()
    time.sleep(0.1)
    gevent.sleep(0.05)
    assert m.blocks == 0 and not m.running
    assert len(sys._current_frames()) == threads_before


def test_bad_arguments():
    with pytest.raises(ValueError):
        HubMonitor(0)
    with pytest.raises(ValueError):
        HubMonitor(0.05, interval_s=0)


def test_the_process_monitor_starts_only_in_a_patched_process_and_feeds_the_metrics(monkeypatch):
    assert hub_monitor.start_for_server(50) is None  # pytest is not monkey-patched: create_app starts nothing
    monkeypatch.setattr(hub_monitor, "_patched", lambda: True)
    assert hub_monitor.start_for_server(0) is None  # 0 = off
    blocks_before = metrics.REGISTRY.get_sample_value("callstream_hub_blocks_total")
    m = hub_monitor.start_for_server(50)
    try:
        assert m is not None and hub_monitor.start_for_server(50) is m  # once per process
        gevent.sleep(0.03)
        time.sleep(0.15)
        gevent.sleep(0.03)
    finally:
        hub_monitor.stop()
    assert metrics.REGISTRY.get_sample_value("callstream_hub_blocks_total") == blocks_before + 1
    assert metrics.REGISTRY.get_sample_value("callstream_hub_block_max_seconds") >= m.max_block_s >= 0.13
    assert not m.running
