"""GET /metrics serves the agreed metrics, and the worker's reporting functions move them."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from app import create_app
from runtime import metrics

AGREED_FAMILIES = {
    "callstream_active_calls": "gauge",
    "callstream_turn_latency_seconds": "histogram",
    "callstream_recognition_seconds": "histogram",
    "callstream_synthesis_seconds": "histogram",
    "callstream_media_messages": "counter",
    "callstream_frames_lost": "counter",
    "callstream_hub_blocks": "counter",
    "callstream_hub_block_max_seconds": "gauge",
}


@pytest.fixture
def client(app_settings):
    return create_app(app_settings).test_client()


def scrape(client, **headers):
    """``{(sample name, frozenset(labels)): value}`` of a GET /metrics."""
    response = client.get("/metrics", headers=headers)
    assert response.status_code == 200
    assert response.headers["Content-Type"] == metrics.CONTENT_TYPE_LATEST
    samples = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            samples[sample.name, frozenset(sample.labels.items())] = sample.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_metrics_lists_the_agreed_families_and_process_metrics(client):
    text = client.get("/metrics").get_data(as_text=True)
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    for name, kind in AGREED_FAMILIES.items():
        assert families.get(name) == kind, name
    assert "process_cpu_seconds" in families and "process_resident_memory_bytes" in families
    samples = scrape(client)
    # Every label value is there before its first event.
    for mode in metrics.MODES:
        assert ("callstream_active_calls", frozenset({("mode", mode)})) in samples
    for stage in metrics.STAGES:
        assert ("callstream_turn_latency_seconds_count", frozenset({("stage", stage)})) in samples
    for direction in ("in", "out"):
        assert ("callstream_media_messages_total", frozenset({("direction", direction)})) in samples


def test_two_apps_in_one_process_share_the_metrics(app_settings, client):
    other = create_app(app_settings).test_client()  # no "Duplicated timeseries" on a second app
    metrics.media_in(3)
    assert value(scrape(client), "callstream_media_messages_total", direction="in") == \
        value(scrape(other), "callstream_media_messages_total", direction="in")


def test_counters_and_gauges_move(client):
    before = scrape(client)
    metrics.call_started("conversation")
    metrics.call_started("fork")
    metrics.call_started("fork")
    metrics.call_ended("fork")
    for _ in range(5):
        metrics.media_in()
    metrics.media_out(7)
    metrics.frames_lost(3)
    metrics.frames_lost(0)
    metrics.frames_lost(-2)
    after = scrape(client)

    def delta(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("callstream_active_calls", mode="conversation") == 1
    assert delta("callstream_active_calls", mode="fork") == 1
    assert delta("callstream_media_messages_total", direction="in") == 5
    assert delta("callstream_media_messages_total", direction="out") == 7
    assert delta("callstream_frames_lost_total") == 3
    metrics.call_ended("conversation")
    metrics.call_ended("fork")


def test_active_call_context_manager_counts_down_on_error():
    gauge = lambda: metrics.REGISTRY.get_sample_value("callstream_active_calls", {"mode": "conversation"})  # noqa: E731
    start = gauge()
    with pytest.raises(RuntimeError):
        with metrics.active_call("conversation"):
            assert gauge() == start + 1
            raise RuntimeError("call failed")
    assert gauge() == start
    with pytest.raises(ValueError, match="mode"):
        metrics.call_started("conference")


def test_turn_latency_takes_the_reply_record_dict(client):
    before = scrape(client)
    metrics.observe_turn_latency({"endpoint": 600, "recognition": 412, "responder": 3, "synthesis": 180, "total": 1250})
    metrics.observe_turn_latency({"recognition": 90, "bogus": 5, "responder": None, "synthesis": -1, "total": "x",
                                  "endpoint": float("nan")})
    after = scrape(client)

    def delta(name, stage):
        return value(after, name, stage=stage) - value(before, name, stage=stage)

    assert delta("callstream_turn_latency_seconds_count", "recognition") == 2
    assert delta("callstream_turn_latency_seconds_sum", "recognition") == pytest.approx(0.502)
    for stage in ("endpoint", "responder", "synthesis", "total"):  # (first_mark: not in this reply)
        assert delta("callstream_turn_latency_seconds_count", stage) == 1, stage
    assert delta("callstream_turn_latency_seconds_sum", "total") == pytest.approx(1.25)
    # 1.25 s falls in the le=1.5 bucket, not in le=1.0
    total = lambda s, le: value(s, "callstream_turn_latency_seconds_bucket", stage="total", le=le)  # noqa: E731
    assert total(after, "1.5") - total(before, "1.5") == 1 and total(after, "1.0") == total(before, "1.0")
    assert not any(name.startswith("callstream") and ("stage", "bogus") in labels for name, labels in after)


def test_engine_histograms(client):
    before = scrape(client)
    metrics.observe_recognition(0.4)
    for _ in range(3):
        metrics.observe_recognition(0.6)
    metrics.observe_synthesis(0.15)
    after = scrape(client)

    def delta(name):
        return value(after, name) - value(before, name)

    assert delta("callstream_recognition_seconds_count") == 4  # one per utterance
    assert delta("callstream_recognition_seconds_sum") == pytest.approx(0.4 + 3 * 0.6)
    assert delta("callstream_synthesis_seconds_count") == 1
    assert delta("callstream_synthesis_seconds_sum") == pytest.approx(0.15)


def test_hub_blocks_count_and_keep_the_longest(client):
    before = scrape(client)
    longest = value(before, "callstream_hub_block_max_seconds") + 1.0
    metrics.hub_blocked(longest)
    metrics.hub_blocked(0.06)
    after = scrape(client)
    assert value(after, "callstream_hub_blocks_total") - value(before, "callstream_hub_blocks_total") == 2
    assert value(after, "callstream_hub_block_max_seconds") == pytest.approx(longest)


def test_metrics_token(app_settings):
    client = create_app({**app_settings, "METRICS_TOKEN": "s3cret", "TWILIO_AUTH_TOKEN": "twilio-token"}).test_client()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}, {"Authorization": "s3cret"}):
        response = client.get("/metrics", headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["WWW-Authenticate"].startswith("Bearer") and b"callstream_" not in response.data
    # Signed requests are for the webhooks and the stream only: a scrape needs just the token.
    assert "callstream_active_calls" in str(scrape(client, Authorization="Bearer s3cret"))
    assert client.get("/").status_code == 200  # the health check stays open


@pytest.mark.parametrize("authorization", ["Bearer \xe9t\xe9", "Bearer s3cr\xe9t", "Basic \xe9\xe9"])
def test_a_non_ascii_credential_is_a_401(app_settings, authorization):
    client = create_app({**app_settings, "METRICS_TOKEN": "s3cret"}).test_client()
    assert client.get("/metrics", headers={"Authorization": authorization}).status_code == 401


def test_metrics_open_without_token_even_with_signature_checks(app_settings):
    client = create_app({**app_settings, "TWILIO_AUTH_TOKEN": "twilio-token"}).test_client()
    assert client.get("/metrics").status_code == 200


@pytest.mark.parametrize("header,token,expected", [
    (None, "", True), ("Bearer anything", "", True), ("Bearer t0k", "t0k", True), ("bearer  t0k ", "t0k", True),
    (None, "t0k", False), ("Bearer t0", "t0k", False), ("Bearer ", "t0k", False), ("Token t0k", "t0k", False),
    ("Bearer \xe9t\xe9", "t0k", False), ("Bearer \u20ac", "t0k", False),
])
def test_authorized(header, token, expected):
    assert metrics.authorized(header, token) is expected
