"""Tests for tools/callsim.py, the command line, and the import hygiene of its package (no network, no gevent)."""

import subprocess
import sys
from pathlib import Path

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
