"""A simulator of Twilio's side of a phone call, run by ``tools/callsim.py``.

Modules, one job each:

* ``frames``: 8 kHz μ-law in 20 ms frames, and the media clock of those frames.
* ``script``: the caller's script (``parse_script``) and behaviour (``CallerScript``, ``TurnWaiter``).
* ``twiml``: the voice webhook's form and the ``<Connect><Stream>`` in its TwiML answer.
* ``messages``: the messages Twilio sends (``TwilioMessages``) and the validation of the server's.
* ``playback``: Twilio's playback buffer for the bot's audio and marks (``PlaybackBuffer``).
* ``latency``: the bot's replies (``ReplyTracker``) and voice-to-voice latency (``pair_latencies``).
* ``report``: the ``--json`` report (``build_report``), the conversation and the summary line.
* ``audio_files``: reading the caller's audio files, writing what the caller heard.
* ``stream``: one Media Stream in real time over a WebSocket (``SimulatedCall``, gevent).
* ``call``: placing the whole call (webhook, stream, call record, report): ``run``.
* ``repo``: the repository root, for importing ``app`` and ``audio``.

``frames``, ``script``, ``twiml``, ``messages``, ``playback``, ``latency`` and
``report`` do no I/O (``report`` prints) and read no clock. Importing any module
of this package imports no gevent, socket or threading, so ``callsim.main`` can
monkey-patch first.
"""
