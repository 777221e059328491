"""Unit tests of core.dtmf: key presses collected into bursts on the media clock."""

import logging

from core.dtmf import MAX_DTMF_KEYS, DtmfBurst, DtmfCollector


def test_keys_wait_for_flush_ms_of_quiet_then_make_one_burst():
    keys = DtmfCollector(flush_ms=1500)
    assert keys.press("1", 1000) is None
    assert keys.press("2", 1400) is None
    assert keys.poll(2899) is None  # 1499 ms after the last key
    assert keys.poll(2900) == DtmfBurst("12", 1000, 1400)
    assert keys.digits == "" and keys.poll(10_000) is None


def test_hash_ends_the_burst_at_once():
    keys = DtmfCollector(flush_ms=1500)
    keys.press("4", 100)
    assert keys.press("#", 300) == DtmfBurst("4#", 100, 300)
    assert keys.press("5", 400) is None and keys.digits == "5"  # a new burst


def test_a_flush_time_of_zero_passes_every_key_at_once():
    keys = DtmfCollector(flush_ms=0)
    assert keys.press("7", 20) == DtmfBurst("7", 20, 20)
    assert keys.press("8", 40) == DtmfBurst("8", 40, 40)


def test_keys_over_the_limit_are_dropped_counted_and_logged_once(caplog):
    keys = DtmfCollector(flush_ms=1000, max_keys=3)
    with caplog.at_level(logging.WARNING, logger="core.dtmf"):
        for now_ms in range(10):
            keys.press("5", now_ms)
    assert keys.digits == "555" and keys.dropped_keys == 7
    assert len(caplog.records) == 1
    assert keys.poll(1002) == DtmfBurst("555", 0, 2)  # a dropped key is not the last key
    assert keys.press("#", 2000) == DtmfBurst("#", 2000, 2000)


def test_discard_forgets_the_burst_so_far():
    keys = DtmfCollector(flush_ms=1500)
    keys.press("9", 0)
    keys.discard()
    assert keys.poll(5000) is None


def test_the_default_limit_is_max_dtmf_keys():
    keys = DtmfCollector(flush_ms=1500)
    for _ in range(MAX_DTMF_KEYS + 1):
        keys.press("1", 0)
    assert len(keys.digits) == MAX_DTMF_KEYS and keys.dropped_keys == 1
