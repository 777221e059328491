"""A simulator of Twilio's (or SignalWire's) side of a phone call, run by ``tools/callsim.py``.

Modules, one job each:

* ``frames``: 8 kHz μ-law in 20 ms frames, and the media clock of those frames.
* ``media_format``: the stream's audio on the wire (``MediaFormat``): μ-law 8 kHz, or SignalWire's
  L16 at 16/24 kHz chosen by ``<Stream codec>``.
* ``dialect``: what differs between Twilio and SignalWire (``TWILIO``, ``SIGNALWIRE``): SIDs,
  message builder, codec choice, request signing, WebSocket upgrade headers.
* ``script``: the script (``parse_script``) and its behaviour: the caller of a conversation
  (``CallerScript``, ``TurnWaiter``), or both sides of a forked call (``ForkScript``).
* ``twiml``: the voice webhook's form and the ``<Connect><Stream>`` (or, for a fork,
  ``<Start><Stream>``) in its TwiML answer.
* ``messages``: the messages Twilio sends (``TwilioMessages``) or SignalWire sends
  (``SignalWireMessages``), and the validation of the server's.
* ``status_callback``: the stream status callback requests (``status_callback_form``, ``callback_request``).
* ``playback``: Twilio's playback buffer for the bot's audio and marks (``PlaybackBuffer``).
* ``echo``: a speakerphone's echo of the bot's audio in the caller's microphone (``EchoPath``).
* ``noise``: background noise on the caller's line at an SNR to their speech (``LineNoise``, ``speech_level``).
* ``latency``: the bot's replies (``ReplyTracker``) and voice-to-voice latency (``pair_latencies``).
* ``report``: the ``--json`` report (``build_report``), the conversation and the summary line.
* ``audio_files``: reading the caller's audio files, writing what the caller heard.
* ``stream``: one Media Stream in real time over a WebSocket (gevent): a conversation
  (``SimulatedCall``) or a listen-only fork (``SimulatedFork``).
* ``call``: placing the whole call (webhook, stream, status callbacks, call record, report): ``run``.
* ``repo``: the repository root, for importing ``app`` and ``audio``.

``frames``, ``media_format``, ``dialect``, ``script``, ``twiml``, ``messages``, ``status_callback``,
``playback``, ``echo``, ``noise``, ``latency`` and ``report`` do no I/O (``report`` prints) and read no clock. Importing any module
of this package imports no gevent, socket or threading, so ``callsim.main`` can
monkey-patch first.
"""
