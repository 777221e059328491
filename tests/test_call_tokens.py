"""Per-call stream tokens (core/call_tokens.py): made by the webhook, checked at the stream's start."""

import pytest

from core.call_tokens import (TOKEN_LIFETIME_S, TOKEN_PARAMETER, CallTokens, derive_key, make_token, verify_token)
from twiml.responses import MAX_PARAMETER_CHARS

CALL = "CA" + "0123456789abcdef" * 2
OTHER_CALL = "CA" + "fedcba9876543210" * 2
NOW_S = 1_795_000_000.0


def test_a_token_is_valid_for_its_call_until_it_expires():
    key = derive_key("auth-token")
    token = make_token(key, CALL, NOW_S)
    assert verify_token([key], CALL, token, NOW_S) is None
    assert verify_token([key], CALL, token, NOW_S + TOKEN_LIFETIME_S) is None  # a <Say> may play first
    assert "expired" in verify_token([key], CALL, token, NOW_S + TOKEN_LIFETIME_S + 1)


def test_a_token_is_not_valid_for_another_call_or_key():
    key = derive_key("auth-token")
    token = make_token(key, CALL, NOW_S)
    assert "not made for this call" in verify_token([key], OTHER_CALL, token, NOW_S)
    assert "not made for this call" in verify_token([derive_key("another-token")], CALL, token, NOW_S)


def test_a_token_with_a_forged_expiry_fails():
    key = derive_key("auth-token")
    expiry, mac = make_token(key, CALL, NOW_S).split(".")
    assert "not made for this call" in verify_token([key], CALL, f"{int(expiry) + 3600}.{mac}", NOW_S)
    far = make_token(key, CALL, NOW_S, lifetime_s=10 * TOKEN_LIFETIME_S)  # signed, but longer-lived than ours
    assert "too far in the future" in verify_token([key], CALL, far, NOW_S)


@pytest.mark.parametrize("token", ["", "x", "1.2", "abc.def", "1795000300." + "0" * 63, "-5." + "0" * 64, "9" * 40 + "." + "0" * 64,
                                   "1795000300." + "é" * 64, "²795000300." + "0" * 64])
def test_malformed_tokens_fail_without_raising(token):
    assert verify_token([derive_key("k")], CALL, token, NOW_S) is not None


def test_every_process_with_the_same_secret_accepts_the_others_tokens():
    webhook_process, stream_process = CallTokens(["auth-token"]), CallTokens(["auth-token"])
    params = {TOKEN_PARAMETER: webhook_process.make(CALL, NOW_S)}
    assert stream_process.check(CALL, params, NOW_S + 2) is None
    assert stream_process.check(OTHER_CALL, params, NOW_S + 2) is not None


def test_tokens_of_any_configured_secret_are_accepted():
    """Twilio and SignalWire secrets both set: a token made with either is accepted by the other process."""
    signalwire_first = CallTokens(["signalwire-key", "twilio-token"])
    twilio_only = CallTokens(["", "twilio-token"])
    assert signalwire_first.check(CALL, {TOKEN_PARAMETER: twilio_only.make(CALL, NOW_S)}, NOW_S) is None


def test_without_a_secret_each_process_has_its_own_random_key():
    one, other = CallTokens([""]), CallTokens([])
    params = {TOKEN_PARAMETER: one.make(CALL, NOW_S)}
    assert one.check(CALL, params, NOW_S) is None
    assert other.check(CALL, params, NOW_S) is not None


def test_the_fixed_bearer_token_is_accepted_for_any_call_and_nothing_else_without_a_token():
    tokens = CallTokens(["auth-token"], bearer_token="owner-secret-0123")
    assert tokens.check(CALL, {TOKEN_PARAMETER: "owner-secret-0123"}, NOW_S) is None
    assert tokens.check(OTHER_CALL, {TOKEN_PARAMETER: "owner-secret-0123"}, NOW_S) is None
    assert tokens.check(CALL, {TOKEN_PARAMETER: "owner-secret-012"}, NOW_S) is not None
    assert "no callstream_token" in tokens.check(CALL, {"From": "+1555"}, NOW_S)
    assert CallTokens(["auth-token"]).check(CALL, {TOKEN_PARAMETER: ""}, NOW_S) is not None  # no fixed token: "" is not one
    assert tokens.check(CALL, {TOKEN_PARAMETER: "owner-secret-é"}, NOW_S) is not None  # non-ASCII: refused, not raised


def test_the_token_fits_well_within_twilios_parameter_limit():
    token = CallTokens(["auth-token"]).make(CALL, NOW_S)
    assert len(TOKEN_PARAMETER) + len(token) < 100 < MAX_PARAMETER_CHARS


def test_a_token_from_the_upgrades_bearer_is_accepted_when_the_parameter_is_missing_or_wrong():
    """SignalWire may drop <Parameter>s: the same token in authBearerToken (sent on the upgrade) binds the stream."""
    tokens = CallTokens(["signing-key"])
    token = tokens.make(CALL, NOW_S)
    assert tokens.check(CALL, {}, NOW_S, bearer_token=token) is None
    assert tokens.check(CALL, {TOKEN_PARAMETER: "garbage"}, NOW_S, bearer_token=token) is None
    assert tokens.check(OTHER_CALL, {}, NOW_S, bearer_token=token) is not None


def test_a_signalwire_stream_token_carries_the_call_token():
    from handlers.signatures import SignatureChecker, call_token_in_bearer

    checker, tokens = SignatureChecker(["signing-key"]), CallTokens(["signing-key"])
    call_token = tokens.make(CALL, NOW_S)
    bearer = checker.make_stream_token(NOW_S, call_token)
    assert checker.check_stream_token(bearer, NOW_S + 1) is None  # the upgrade check is unchanged
    assert call_token_in_bearer(bearer) == call_token
    assert tokens.check(CALL, {}, NOW_S + 1, bearer_token=call_token_in_bearer(bearer)) is None
    assert tokens.check(CALL, {}, NOW_S, bearer_token=call_token_in_bearer(checker.make_stream_token(NOW_S))) is not None
    assert call_token_in_bearer("fixed-bin-token") == "fixed-bin-token"
