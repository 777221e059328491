"""Tests for tools/callsim.py, the command line, and the import hygiene of its package (no network, no gevent)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_import_does_not_pull_in_network_or_threading_modules():
    # callsim.main monkey-patches for gevent before the call's code runs: importing the command or any
    # module of tools.twilio_sim must not import what gevent patches.
    code = ("import importlib, pkgutil, sys, tools.callsim, tools.twilio_sim; "
            "[importlib.import_module('tools.twilio_sim.' + m.name) for m in pkgutil.iter_modules("
            "tools.twilio_sim.__path__)]; "
            "print([m for m in ('gevent', 'websocket', 'requests', 'socket', 'threading') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_fork_options_parse_with_their_defaults():
    from tools.callsim import build_arg_parser

    args = build_arg_parser().parse_args(["--fork", "q.wav", "callee:a.wav"])
    assert (args.fork, args.gap_s, args.tail_s, args.script) == (True, 0.8, 2.0, ["q.wav", "callee:a.wav"])
    assert build_arg_parser().parse_args(["q.wav"]).fork is False


def test_signalwire_options_parse_with_their_defaults():
    from tools.callsim import build_arg_parser

    args = build_arg_parser().parse_args(["--signalwire", "--codec", "L16@24000h", "--signing-key", "k", "q.wav"])
    assert (args.signalwire, args.codec, args.signing_key) == (True, "L16@24000h", "k")
    plain = build_arg_parser().parse_args(["q.wav"])
    assert (plain.signalwire, plain.codec, plain.signing_key) == (False, None, None)


def test_echo_options_parse_with_their_defaults():
    from tools.callsim import build_arg_parser

    args = build_arg_parser().parse_args(["--echo-db", "-20", "--echo-delay-ms", "170", "q.wav"])
    assert (args.echo_db, args.echo_delay_ms) == (-20.0, 170)
    plain = build_arg_parser().parse_args(["q.wav"])
    assert (plain.echo_db, plain.echo_delay_ms) == (None, 160)  # no echo unless asked for


def test_the_noise_option_parses_file_and_snr():
    from tools.callsim import build_arg_parser

    assert build_arg_parser().parse_args(["--noise", "tests/data/noise/babble.flac:5", "q.wav"]).noise == (
        "tests/data/noise/babble.flac", 5.0)
    assert build_arg_parser().parse_args(["q.wav"]).noise is None  # a clean line unless asked for


@pytest.mark.parametrize("argv, message", [
    (["callee:a.wav"], "need --fork"),
    (["--fork", "dtmf:12"], "bidirectional"),
    (["--fork", "--gap-s", "-1", "silence:1"], "--gap-s"),
    (["--fork", "--tail-s", "nan", "silence:1"], "--tail-s"),
    (["--codec", "L16@16000h", "silence:1"], "need --signalwire"),
    (["--signing-key", "key", "silence:1"], "need --signalwire"),
    (["--signalwire", "--auth-token", "token", "silence:1"], "use --signing-key"),
    (["--signalwire", "--codec", "L16@8000h", "silence:1"], "invalid choice"),
    (["--echo-db", "3", "silence:1"], "--echo-db: must be a finite number of dB <= 0"),
    (["--echo-db", "nan", "silence:1"], "--echo-db: must be a finite number of dB <= 0"),
    (["--echo-db", "loud", "silence:1"], "--echo-db: not a number"),
    (["--echo-db", "-20", "--echo-delay-ms", "2001", "silence:1"], "--echo-delay-ms: must be within 0..2000"),
    (["--echo-db", "-20", "--echo-delay-ms", "-1", "silence:1"], "--echo-delay-ms: must be within 0..2000"),
    (["--echo-db", "-20", "--echo-delay-ms", "1.5", "silence:1"], "--echo-delay-ms: not a whole number"),
    (["--fork", "--echo-db", "-20", "silence:1"], "a fork has no bot audio"),
    (["--noise", "tests/data/noise/street.flac", "silence:1"],
     "--noise: 'tests/data/noise/street.flac': expected FILE:SNR"),
    (["--noise", "tests/data/noise/street.flac:loud", "silence:1"], "must be a number of dB"),
    (["--noise", "tests/data/noise/street.flac:90", "tests/data/jfk.flac"], "must be within -20..60 dB"),
    (["--noise", "tests/data/no-such.flac:10", "tests/data/jfk.flac"], "--noise: cannot read audio"),
    (["--noise", "tests/data/jfk.txt:10", "tests/data/jfk.flac"], "--noise: cannot read audio"),
    (["--noise", "tests/data/noise/street.flac:10", "dtmf:1", "silence:1"], "the script needs an audio item"),
])
def test_bad_mode_arguments_exit_2_before_any_call(argv, message):
    # --url points at a closed port: a call attempt would fail with exit code 1, not 2.
    out = subprocess.run([sys.executable, "tools/callsim.py", "--url", "http://127.0.0.1:9", *argv], cwd=REPO_ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert message in out.stderr
