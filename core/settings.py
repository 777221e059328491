"""Configuration: every setting, its type, default and meaning, read from environment variables.

The fields of ``Settings`` are the settings table, the single source of names, types, defaults,
parsing and help: ``SETTINGS`` lists them by environment variable, and docs/configuration.md is
generated from them (``tools/config_doc.py``; a test fails when it is stale). ``load_settings``
returns one frozen ``Settings`` (``settings.max_calls``). Pure: the environment is passed in.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Callable, Mapping

from core.backchannel import DEFAULT_BACKCHANNELS, DEFAULT_STOP_WORDS


class SettingsError(ValueError):
    """An environment variable has a value of the wrong type or out of range, or an override names no setting."""


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    parse: Callable[[str], Any]
    help: str


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {text!r}")
        return value

    return parse


def _int_range(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise ValueError(f"expected an integer from {low} to {high}, got {value}")
        return value

    return parse


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError(f"expected a positive number, got {value}")
    return value


def _name_list(*choices: str) -> Callable[[str], str]:
    """A comma-separated list of some of ``choices``, normalized (``"a,b"``); ``none`` gives ``""``
    (an empty variable is unset: the default)."""
    def parse(text: str) -> str:
        names = [name.strip().lower() for name in text.split(",") if name.strip()]
        if names == ["none"]:
            return ""
        unknown = [name for name in names if name not in choices]
        if unknown:
            raise ValueError(f"expected a comma-separated list of {', '.join(choices)}, got {', '.join(unknown)}")
        return ",".join(dict.fromkeys(names))

    return parse


def _url(text: str) -> str:
    value = text.strip().rstrip("/")
    if value and not value.startswith(("http://", "https://", "wss://")):
        raise ValueError(f"expected an absolute URL such as https://abc.ngrok.app, got {text!r}")
    return value


def _phone_number(text: str) -> str:
    from core.dial_targets import check_phone_number

    return check_phone_number(text, "the number") if text.strip() else ""


def _responder_specs(text: str) -> str:
    specs = [spec.strip() for spec in text.split(",") if spec.strip()]
    for spec in specs:
        if spec != "llm" and spec not in ECHO_RESPONDERS and ":" not in spec:
            raise ValueError(f"expected comma-separated module:function names, got {spec!r}")
    return ",".join(specs)


def _signalwire_codec(text: str) -> str:
    codecs = {"": "", "pcmu": "", "l16@16000h": "L16@16000h", "l16@24000h": "L16@24000h"}
    value = codecs.get(text.strip().lower())
    if value is None:
        raise ValueError(f"expected L16@16000h, L16@24000h or empty (μ-law), got {text!r}")
    return value


ECHO_RESPONDERS = ("echo", "core.responder:echo")
RESPONDER_GREETING = "Hello! How can I help you?"

def _setting(default: Any, parse: Callable[[str], Any], help: str, *, secret: bool = False) -> Any:
    """One field of ``Settings``: its default, the parser of its environment variable, its help text."""
    return field(default=default, repr=not secret, metadata={"parse": parse, "help": help})


@dataclass(frozen=True)
class Settings:
    """Every setting, parsed and typed: its name in lowercase, its type, default, parser and help.

    This class is the settings table: ``SETTINGS`` (the environment variables' names) and
    docs/configuration.md are made from its fields. Made by :func:`load_settings`. Secrets (and
    ``database_url``, which may hold a password) are left out of its repr, so a logged ``Settings``
    or ``Services`` shows none.
    """

    port: int = _setting(5050, _int_range(0, 65535), "TCP port the server listens on, `python app.py` or gunicorn (`gunicorn.conf.py` binds `0.0.0.0:$PORT`, as a PaaS sets it).")
    web_concurrency: int = _setting(1, _int_range(1, 64), "gunicorn worker processes (`gunicorn.conf.py`; `python app.py` is one process). Each worker is a whole server with its own speech models (about 450 MB after start-up, 800 MB at 25 calls) sharing the machine's cores, so workers beyond the cores add no capacity; `MAX_CALLS` and `/metrics` are per worker. gunicorn.conf.py starts at most one worker per core and per 800 MB of memory: Heroku's Python buildpack sets this variable by dyno size when it is not a config var (4 on a 1 GB standard-2x). See docs/deploy.md, \"Scaling\".")
    public_url: str = _setting("", _url, "Public base URL, e.g. `https://abc.ngrok.app`; the stream URL becomes `wss://<host>/media-stream`. Unset: the host of the webhook request.")
    twilio_account_sid: str = _setting("", str, "Twilio account SID. With `TWILIO_AUTH_TOKEN`, a call the server ends is also hung up through the REST API (`Status=completed`), whatever TwiML follows `</Connect>`.")
    twilio_auth_token: str = _setting("", str, "Twilio auth token. When set, every webhook and the media stream's WebSocket upgrade must carry a valid `X-Twilio-Signature` (else 403).", secret=True)
    twilio_api_base_url: str = _setting("", _url, "Where the REST API requests go (scheme, host and port), for a stand-in of Twilio's API in tests and the simulator; empty: Twilio's own hosts. The account SID and auth token are sent there.")
    signalwire_signing_key: str = _setting("", str, "SignalWire signing key; requests signed with it (`X-SignalWire-Signature`) are accepted the same way.", secret=True)
    stream_bearer_token: str = _setting("", str, "A fixed token for hand-written TwiML or LaML Bins, which cannot compute the per-call stream token this server's webhooks put in the TwiML: accepted as `<Parameter name=\"callstream_token\" value=…>` in the `<Stream>` (it binds the stream to your TwiML, not to one call), and on the WebSocket upgrade as `Authorization: Bearer` instead of a signature (SignalWire `<Stream authBearerToken=…>`). Empty: streams need the per-call token.", secret=True)
    signalwire_codec: str = _setting("", _signalwire_codec, "Audio of SignalWire calls: `L16@16000h` or `L16@24000h` (linear PCM, wideband: better recognition) is put in the `<Stream codec=…>` answered to a SignalWire webhook. Empty: μ-law 8 kHz, like Twilio. Twilio webhooks never get it.")
    app_env: str = _setting("development", _choice("development", "production"), "`production` refuses to start without `TWILIO_AUTH_TOKEN` or `SIGNALWIRE_SIGNING_KEY` (unless `ALLOW_UNSIGNED_REQUESTS` is true), and without `DASHBOARD_PASSWORD`.")
    allow_unsigned_requests: bool = _setting(False, _bool, "Let a production server run without signature checks (e.g. behind your own authenticating proxy).")
    responder: str = _setting("core.responder:echo", str, "The function that answers: `llm` (a language model, the `LLM_*` settings), `echo`, or your own `module:function`, called as `f(text, call)`. Default: echo.")
    llm_base_url: str = _setting("http://localhost:11434/v1", _url, "`RESPONDER=llm`: base URL of an OpenAI-compatible chat completions API, up to `/v1`: Ollama `http://localhost:11434/v1`, llama.cpp server `http://localhost:8080/v1`, vLLM `http://localhost:8000/v1`, OpenAI `https://api.openai.com/v1`.")
    llm_model: str = _setting("llama3.2", str, "`RESPONDER=llm`: the model name, as the server knows it.")
    llm_api_key: str = _setting("", str, "`RESPONDER=llm`: API key sent as a bearer token; empty for local servers that need none.", secret=True)
    llm_system_prompt: str = _setting("", str, "`RESPONDER=llm`: the system prompt. Empty: a built-in one asking for short, plain spoken answers (`responders/llm.py`).")
    llm_speculative: bool = _setting(False, _bool, "`RESPONDER=llm`: also ask the model during the caller's pause (`SPECULATION_PAUSE_MS`), before the endpoint; its reply is held until the caller has finished and thrown away (its stream closed) if they go on. Faster answers, more requests.")
    llm_max_tokens: int = _setting(300, _int_range(1, 100000), "`RESPONDER=llm`: longest reply, in tokens.")
    llm_tools: str = _setting("", str, "`RESPONDER=llm`: a Python module (`package.module`, importable as `RESPONDER`'s are) whose typed public functions the model may call as tools: those in its `__all__`, else those defined in it without a leading `_`. Their JSON schemas come from the type hints (`str`, `int`, `float`, `bool`, `Literal`, `Enum`, `list[...]`, `Optional`) and the docstrings (summary, Google-style `Args:`); a function that cannot be a tool stops the start-up. Not with `LLM_SPECULATIVE`. docs/responders.md, \"Tools for the language model\".")
    llm_tool_timeout_s: float = _setting(10.0, _positive_float, "`RESPONDER=llm`: longest run of one `LLM_TOOLS` function (in a thread); then the model is told it timed out (the thread runs on). Must be under `RESPONDER_TIMEOUT_S`, s.")
    llm_builtin_tools: str = _setting("end_call,transfer_call", _name_list("end_call", "transfer_call"), "`RESPONDER=llm` with `LLM_TOOLS`: the built-in tools offered to the model besides the module's, comma-separated: `end_call` (say a goodbye, hang up) and `transfer_call` (announce, then transfer the live call to one of `LLM_TRANSFER_TARGETS`; needs `TWILIO_ACCOUNT_SID` and `TWILIO_AUTH_TOKEN`, and is not offered while `LLM_TRANSFER_TARGETS` is empty). `none`: none. Without `LLM_TOOLS` no tool is offered (a model without tool support answers such a request with an error).")
    llm_transfer_targets: str = _setting("", str, "`RESPONDER=llm`: comma-separated E.164 numbers (`+15551234567`) and `sip:` addresses that `transfer_call` may transfer to; the model is shown them and any other target is refused. Empty: no `transfer_call` (a model must not transfer a caller to a number the caller named: toll fraud).")
    greeting: str = _setting("Hello! Say something and I will repeat it.", str, "Spoken with our voice when the stream starts; empty for none. Unset with any `RESPONDER` but echo: \"Hello! How can I help you?\"")
    twiml_greeting: str = _setting("", str, "Spoken by Twilio's `<Say>` before the stream connects; empty for none.")
    twilio_phone_number: str = _setting("", _phone_number, "Your Twilio number (E.164, e.g. `+15551234567`): the caller ID of outbound calls (`POST /api/calls`, `tools/call.py`) that name no `from`.")
    machine_detection: bool = _setting(True, _bool, "Outbound calls ask Twilio for answering-machine detection (`MachineDetection=DetectMessageEnd`, asynchronous): the bot says nothing until Twilio has told who answered; a person hears the greeting, a voicemail hears `VOICEMAIL_MESSAGE` after its beep. A call may turn it off (`\"machine_detection\": false`).")
    machine_detection_timeout_s: int = _setting(30, _int_range(3, 59), "How long Twilio's answering-machine detection may take (`MachineDetectionTimeout`), s; after it, the answer is `unknown` and the bot greets as for a person.")
    voicemail_message: str = _setting("Hello, this is an automated call. Sorry we missed you, please call us back. Goodbye.", str, "What an outbound call says to an answering machine after its beep before it hangs up (a responder marked `@answers_machines` decides instead). Empty: hang up without a message.")
    outbound_responders: str = _setting("", _responder_specs, "Comma-separated responders (`module:function` or `llm`) that `POST /api/calls` may name for one call in `\"responder\"`; any other name is refused (a responder is code: the API cannot load just any module). Empty: calls use `RESPONDER`.")
    forward_to: str = _setting("", str, "Number (E.164) or SIP address that `/forward-call` dials while it forks the call to a listen-only stream.")
    recognizer: str = _setting("whisper", _choice("whisper", "google", "openai"), "Speech recognition engine: `whisper` (offline, faster-whisper tiny.en), `google` (online) or `openai` (any OpenAI-compatible `/audio/transcriptions` service: the `RECOGNIZER_*` settings).")
    recognition_workers: int = _setting(2, _int_range(1, 4), "Whisper engine threads (each with its own model replica) that take queued utterances in arrival order.")
    recognition_cpu_threads: int = _setting(0, _int_range(0, 64), "CTranslate2 threads per whisper engine thread; 0: the cores this process may use, at most 4.")
    recognition_packing: bool = _setting(False, _bool, "Whisper: when an engine thread frees and several utterances are queued, decode those that fit in one 30 s window together (2 s of silence apart) and split the words back by their timestamps; an utterance whose split is in doubt is decoded again alone. Off by default: on the test corpus (docs/benchmarks.md, \"Packing utterances into one whisper window\") about half the packed utterances were in doubt, which used up the saving (0.92-0.99 of the single runs' core-seconds), and 14 % of the others had different words from a single decode (WER 0.065 → 0.076).")
    synthesizer: str = _setting("piper", _choice("piper", "gtts", "openai"), "Speech synthesis engine: `piper` (offline), `gtts` (online) or `openai` (any OpenAI-compatible `/audio/speech` service: the `SYNTHESIZER_*` settings). An online one that fails is replaced by piper for that sentence.")
    recognizer_base_url: str = _setting("https://api.openai.com/v1", _url, "`RECOGNIZER=openai`: base URL of an OpenAI-compatible transcription API, up to `/v1`: OpenAI `https://api.openai.com/v1`, Groq `https://api.groq.com/openai/v1`, a self-hosted speaches or faster-whisper server `http://host:8000/v1`, vLLM `http://host:8000/v1`.")
    recognizer_model: str = _setting("whisper-1", str, "`RECOGNIZER=openai`: the model, as the server knows it: OpenAI `whisper-1` or `gpt-4o-mini-transcribe`, Groq `whisper-large-v3-turbo`, speaches e.g. `Systran/faster-whisper-small`.")
    recognizer_api_key: str = _setting("", str, "`RECOGNIZER=openai`: API key sent as `Authorization: Bearer`; empty sends none (self-hosted servers).", secret=True)
    recognizer_http_timeout_s: float = _setting(10.0, _positive_float, "`RECOGNIZER=openai`: connect timeout, read timeout and deadline of the whole answer of one transcription request (unlike `RECOGNITION_TIMEOUT_S`, which bounds the call's wait, this also frees the engine thread), s.")
    synthesizer_base_url: str = _setting("https://api.openai.com/v1", _url, "`SYNTHESIZER=openai`: base URL of an OpenAI-compatible speech API, up to `/v1`: OpenAI `https://api.openai.com/v1`, a self-hosted speaches server `http://host:8000/v1`.")
    synthesizer_model: str = _setting("tts-1", str, "`SYNTHESIZER=openai`: the model: OpenAI `tts-1` (fastest) or `gpt-4o-mini-tts`, speaches e.g. `speaches-ai/Kokoro-82M-v1.0-ONNX`.")
    synthesizer_voice: str = _setting("alloy", str, "`SYNTHESIZER=openai`: the voice: OpenAI `alloy`, `nova`, `onyx`, …; speaches/Kokoro e.g. `af_heart`.")
    synthesizer_api_key: str = _setting("", str, "`SYNTHESIZER=openai`: API key sent as `Authorization: Bearer`; empty sends none (self-hosted servers).", secret=True)
    synthesizer_response_format: str = _setting("pcm", _choice("pcm", "wav"), "`SYNTHESIZER=openai`: `pcm` (raw 16-bit samples at 24 kHz, OpenAI's format: no header to parse) or `wav` (its rate read from the header: for servers whose raw PCM is not 24 kHz). A server that refuses `pcm` gets `wav` instead.")
    synthesizer_http_timeout_s: float = _setting(10.0, _positive_float, "`SYNTHESIZER=openai`: connect timeout, read timeout and deadline of the whole answer of one sentence's request; on failure the sentence is spoken by piper, s.")
    language: str = _setting("en", str, "Recognition language code (`en`; Google gets `en-US`).")
    google_speech_key: str = _setting("", str, "API key for `RECOGNIZER=google`; empty uses SpeechRecognition's default key.", secret=True)
    echo_cancellation: bool = _setting(True, _bool, "For callers on speakerphones: once the bot's own voice is found coming back on the caller's line (in its first second of bot audio), remove it (WebRTC's echo canceller) before the VAD and the recognizer hear it, so the bot does not interrupt itself with its echo. A line found to carry no echo (a handset) is left as it is; until it is known, caller audio no louder than the bot's could be (7 dB under it) is silenced while the bot talks. `false`: never (docs/benchmarks.md, \"Echo on a speakerphone\").")
    vad: str = _setting("hybrid", _choice("hybrid", "webrtc", "silero"), "Voice activity detector deciding caller speech per 20 ms frame: `hybrid` (WebRTC VAD at `VAD_MODE`, and while the line is noisy only where Silero VAD also hears speech), `webrtc` (WebRTC VAD alone) or `silero` (Silero VAD v6 alone, the model faster-whisper ships, about 0.1 ms of CPU per frame). WebRTC VAD alone takes street noise and music on the caller's line for speech, so turns end only at `MAX_UTTERANCE_MS` and the noise alone stops the bot; `hybrid` asks Silero too while the line is noisy (from a call's start until 200 ms of the line have shown no such noise, and again once 65 % of the last 5 s that both do not call speech is WebRTC hearing speech where Silero does not), so it ends turns in that noise like `silero` while a clean line keeps WebRTC's decisions and earlier speech start (Silero alone hears it 20-320 ms later); it runs Silero only on frames WebRTC calls speech. Neither ignores other people talking (docs/benchmarks.md, \"WebRTC VAD confirmed by Silero\").")
    vad_mode: int = _setting(3, _int_range(0, 3), "`VAD=webrtc` and `hybrid`: WebRTC VAD aggressiveness, 0 (most speech) to 3 (least noise).")
    barge_in_min_ms: int = _setting(500, _int_range(0, 5000), "Caller speech over the bot (first to last voiced frame; for words that go on after a pause, the parts added up) that stops it unless its transcript is only `BACKCHANNELS`. A shorter utterance stops it only if its transcript holds one of `BARGE_IN_WORDS`; a cough, a \"mhm\" or a blip of the bot's own echo never does. Until then the bot's audio plays on. 0: the bot stops as soon as speech starts, ms.")
    barge_in_words: str = _setting(", ".join(DEFAULT_STOP_WORDS), str, "Comma-separated words and phrases that stop the bot however briefly they are said over it (a short \"no\" or \"wait\"); any other utterance shorter than `BARGE_IN_MIN_MS` does not.")
    backchannels: str = _setting(", ".join(DEFAULT_BACKCHANNELS), str, "Comma-separated words and phrases a caller says over the bot without taking the turn; said alone over the bot, they neither stop it nor get an answer.")
    speech_start_ms: int = _setting(200, _int_range(20, 2000), "Voiced audio needed before an utterance starts, ms.")
    endpoint_silence_ms: int = _setting(600, _int_range(100, 5000), "Silence before the bot answers a turn whose transcript is undecided (ends with a period: whisper also closes fragments so) while nothing is known of how this caller pauses, i.e. before their first answered turn; with `ENDPOINT_COMPLETE_MS=0`, the silence that ends every utterance (docs/architecture.md, \"End of turn\"), ms.")
    endpoint_complete_ms: int = _setting(300, _int_range(0, 5000), "Silence that ends an utterance (recognition starts), and before the bot answers an undecided turn once this caller had a turn answered without pausing longer mid-turn (else their longest such pause plus 100 ms). 0: off, every turn waits `ENDPOINT_SILENCE_MS` as one fixed endpoint, ms.")
    endpoint_incomplete_ms: int = _setting(1200, _int_range(100, 10000), "Silence before the bot answers a turn whose transcript is unfinished (\"and so my\", \"in the...\", no final period, a last word like \"to\" or \"the\"); if the caller goes on first, it is one turn. Needs `ENDPOINT_COMPLETE_MS <= ENDPOINT_SILENCE_MS <= ENDPOINT_INCOMPLETE_MS`, ms.")
    speculation_pause_ms: int = _setting(200, _int_range(0, 5000), "A pause this long starts recognition at once, before the endpoint; if the pause becomes the endpoint the result is used (and with a `@speculative` responder the reply is ready too). 0: off, ms.")
    pre_roll_ms: int = _setting(300, _int_range(0, 2000), "Audio kept from before the utterance start, ms.")
    max_utterance_ms: int = _setting(15000, _int_range(1000, 60000), "Longest utterance; longer speech is cut and transcribed in parts, ms.")
    outbound_chunk_ms: int = _setting(20, _int_range(10, 1000), "Audio per outbound media message, ms.")
    dtmf_flush_ms: int = _setting(1500, _int_range(0, 10000), "Key presses reach the responder this long after the last key, or at once on `#`; 0 sends each key at once, ms.")
    max_calls: int = _setting(25, _int_range(0, 100000), "Concurrent calls per process, counted from each stream's `start` message. A call over the limit hears `BUSY_MESSAGE` and is hung up (a fork over the limit is forwarded without the fork).")
    busy_message: str = _setting("Sorry, all our lines are busy right now. Please call again later. Goodbye.", str, "What a caller over `MAX_CALLS` (or refused under overload with `OVERLOAD_ANSWER=busy`) hears.")
    overload_reply_budget_ms: int = _setting(1500, _int_range(0, 60000), "Admission control: a new conversation is refused at the webhook when the engines' backlog (queued work in core-seconds) and the calls still waiting for their first reply would make its first reply come later than this after the caller's last word (voice to voice: `ENDPOINT_SILENCE_MS` included; docs/capacity.md has the model). Engines on other machines (`RECOGNIZER=google`, `openai`) cost nothing here. 0: off (only `MAX_CALLS` limits calls), ms.")
    overload_answer: str = _setting("busy", _choice("busy", "503"), "How a webhook refuses a call under overload: `busy` answers TwiML that says `BUSY_MESSAGE` and hangs up; `503` answers HTTP 503, so Twilio tries the number's Fallback URL (another instance, or another number).")
    max_call_duration_s: int = _setting(3600, _int_range(0, 86400), "Longest call (stream time); then the caller hears a goodbye and the call ends. 0: no limit, s.")
    max_pending_streams: int = _setting(50, _int_range(0, 100000), "WebSocket connections waiting for their `start` message (they count against `MAX_CALLS` only from `start` on); a connection over this many is closed at once.")
    start_timeout_s: float = _setting(10.0, _positive_float, "A media stream socket that sends no `start` within this time is closed, s.")
    media_timeout_s: float = _setting(30.0, _positive_float, "A started stream that sends no message for this long is dead: the call is ended and saved as if the socket had dropped, s.")
    max_media_ahead_s: float = _setting(5.0, _positive_float, "A `media` message whose audio would end further ahead of the wall-clock time since `start` is dropped (logged), so no message makes the recording jump ahead: recordings grow at most at real time plus this, s.")
    ws_ping_interval_s: int = _setting(25, _int_range(0, 3600), "The server pings each media stream socket this often and closes one that has not answered the previous ping (a half-open connection); 0: no pings, s.")
    max_message_bytes: int = _setting(65536, _int_range(1024, 16 * 1024 * 1024), "Largest WebSocket message accepted; a larger one closes the socket (code 1009), bytes.")
    apology_message: str = _setting("Sorry, something went wrong on my side. Could you say that again?", str, "Said in the offline voice when recognition or the responder fails or times out.")
    idle_nudge_s: int = _setting(15, _int_range(0, 3600), "Caller silence (while the bot is quiet) after which they hear \"Are you still there?\" once; 0: never, s.")
    idle_hangup_s: int = _setting(30, _int_range(0, 3600), "Caller silence after which they hear a goodbye and the call ends; 0: never, s.")
    send_timeout_s: float = _setting(5.0, _positive_float, "A send to Twilio that takes longer means the socket is half-dead: the call is ended, s.")
    shutdown_grace_s: float = _setting(25.0, _positive_float, "On SIGTERM (every PaaS restart) the server (`python app.py` or the Procfile's gunicorn) stops taking calls and lets active calls go on this long, then ends them, saves everything and exits 0, s.")
    recognition_timeout_s: float = _setting(15.0, _positive_float, "Longest wait for one transcription, s.")
    responder_timeout_s: float = _setting(15.0, _positive_float, "Longest wait for the responder, s.")
    synthesis_timeout_s: float = _setting(15.0, _positive_float, "Longest wait for one synthesized sentence, s.")
    background_nice: int = _setting(10, _int_range(0, 19), "Nice value of the threads that run the speech engines, the database and file writes, so the thread serving every call's audio gets a core first; 0: same priority.")
    warm_up: bool = _setting(True, _bool, "Load and exercise the speech engines at start-up, so the first call is not slow.")
    database_url: str = _setting("", str, "Call store. Empty: a SQLite file `callstream.db` in the working directory. `postgresql://…` (or Heroku's `postgres://…`): PostgreSQL.", secret=True)
    recordings_dir: str = _setting("recordings", str, "Folder where each call's WAV files are written as the call goes (one sub-folder per call SID).")
    recordings_store: str = _setting("folder", _choice("folder", "database"), "Where finished recordings are kept: `folder` (in `RECORDINGS_DIR`) or `database` (in the call store, for platforms whose filesystem is wiped at restart).")
    store_retry_max_s: float = _setting(60.0, _positive_float, "A call that ends while the call store is unreachable stays pending in its recordings folder (its final record in `call.json`) and is filed when the store answers: retried after 1 s, then doubling up to this, s.")
    instance_heartbeat_s: float = _setting(10.0, _positive_float, "Every process sharing the call store refreshes its row in `instances` this often; a process on another host silent for 3 intervals is taken as gone (on the same host its pid tells), and its open calls are ended and its recordings filed by the others, s.")
    dashboard_user: str = _setting("admin", str, "User name of the HTTP Basic login that `DASHBOARD_PASSWORD` turns on.")
    dashboard_password: str = _setting("", str, "When set, the call history (`/calls`, `/api/calls…`), the recordings and `/metrics` need an HTTP Basic login as `DASHBOARD_USER` with this password (else 401). Empty: served only to this machine (loopback clients not behind a proxy); `APP_ENV=production` refuses to start without it.", secret=True)
    retention_days: int = _setting(0, _int_range(0, 36500), "Calls that ended more than this many days ago are deleted, with their recordings, by an hourly job of the server. 0: keep everything, days.")
    metrics_token: str = _setting("", str, "When set, `GET /metrics` also accepts `Authorization: Bearer <token>` (a scraper's credential) besides the dashboard login. Neither set: served only to this machine.", secret=True)
    hub_block_threshold_ms: int = _setting(50, _int_range(0, 60000), "A gevent hub block longer than this is counted in `callstream_hub_blocks_total` and logged (with what blocked); 0 turns the monitor off, ms.")
    log_transcripts: bool = _setting("", _bool, "Log what callers said and what the bot answered (at INFO). Empty: true unless `APP_ENV=production`; off, the log has only lengths and counts.")
    log_level: str = _setting("INFO", _choice("debug", "info", "warning", "error"), "Logging level.")

SETTINGS: tuple[Setting, ...] = tuple(
    Setting(f.name.upper(), f.default, f.metadata["parse"], f.metadata["help"]) for f in fields(Settings)
)
"""Every setting by its environment variable's name (``MAX_CALLS``), in the order of ``Settings``."""


_NAMES = frozenset(setting.name for setting in SETTINGS)


def _setting_name(name: str) -> str:
    """``name`` as in ``SETTINGS`` (``MAX_CALLS``), from itself or its attribute name (``max_calls``)."""
    upper = name.upper()
    if upper not in _NAMES:
        raise SettingsError(f"{name}: not a setting (core.settings.SETTINGS)")
    return upper


def load_settings(environ: Mapping[str, str], overrides: Mapping[str, Any] | None = None) -> Settings:
    """Read every setting from ``environ`` (strings), then apply ``overrides`` (typed values).

    Args:
        environ: environment variables, ``{"MAX_CALLS": "10"}``; names not in ``SETTINGS`` are ignored.
        overrides: typed values that win over ``environ``, by setting name (``MAX_CALLS``) or
            attribute name (``max_calls``); not parsed or checked.

    Returns:
        The frozen ``Settings``, every entry of ``SETTINGS`` as an attribute.

    Raises:
        SettingsError: a value does not parse (the message names the variable), or an override
            names no setting.
    """
    given = {_setting_name(name): value for name, value in (overrides or {}).items()}
    values: dict[str, Any] = {}
    for setting in SETTINGS:
        raw = environ.get(setting.name)
        if raw is None or (raw == "" and setting.parse is not str):
            values[setting.name] = setting.default
            continue
        try:
            values[setting.name] = setting.parse(raw)
        except ValueError as exc:
            raise SettingsError(f"{setting.name}: {exc}") from None
    values.update(given)
    if values["LOG_TRANSCRIPTS"] == "":  # words are personal data: not in production logs unless asked for
        values["LOG_TRANSCRIPTS"] = values["APP_ENV"] != "production"
    if "GREETING" not in environ and "GREETING" not in given and values["RESPONDER"] not in ECHO_RESPONDERS:
        values["GREETING"] = RESPONDER_GREETING  # the echo's "I will repeat it" would mislead
    complete_ms, silence_ms, incomplete_ms = (
        values["ENDPOINT_COMPLETE_MS"], values["ENDPOINT_SILENCE_MS"], values["ENDPOINT_INCOMPLETE_MS"])
    if complete_ms and not complete_ms <= silence_ms <= incomplete_ms:
        raise SettingsError(f"need ENDPOINT_COMPLETE_MS <= ENDPOINT_SILENCE_MS <= ENDPOINT_INCOMPLETE_MS, got "
                            f"{complete_ms}, {silence_ms}, {incomplete_ms} (or ENDPOINT_COMPLETE_MS=0)")
    return Settings(**{name.lower(): value for name, value in values.items()})
