"""Benchmark: N concurrent conversations, and N listen-only forks, against one server process.

For each load level a fresh ``python app.py`` is started on a free port (default offline engines,
SQLite and recordings in a temporary folder, ``MAX_CALLS=1000``), warmed up with one short call,
measured at rest, then loaded; it is stopped after each level so per-process numbers (the hub's
longest block, peak memory) belong to that level.

* **Conversations** (``--conversations 1,10,25,50``): each call waits for the greeting, then
  speaks ``--turns`` utterances of real speech (the corpus' ``jfk.flac`` cut at its long pause,
  and ``sr_english.wav``) in real time, sending μ-law silence while it waits; the bot's audio goes
  through a model of Twilio's playback buffer (20 ms per tick, marks echoed when played), and the
  next utterance starts once the reply has played and the bot has been quiet for 1.5 s. Call
  ``i`` of N starts ``i × --spread-s / N`` seconds after the first and speaks the utterances in
  an order rotated by ``i``, so turns do not line up.
* **Forks** (``--forks 100,250,500``): each fork is the ``/forward-call`` webhook's
  ``<Start><Stream track="both_tracks">``: one media message per track every 20 ms for
  ``--fork-seconds``, the caller's track carrying the utterances at random intervals (pauses of
  1.5–4 s), the callee's silence (``--silent-forks``: silence on both, so no recognition). Forks
  start evenly over ``N/50`` s (1 to 10 s). Every message of every fork is built before the run;
  ``--fork-burst K`` sends K ticks at once every K × 20 ms (default 1, as Twilio does).

Measured per level:

* voice-to-voice (conversations): wall time from sending the media message holding a caller
  turn's last voiced frame (the turn's ``end_ms`` in the server's call record) to receiving the
  first media message of the bot's reply;
* outbound gaps: the playback buffer ran dry inside a reply and more reply audio came later
  (count, and the longest wait for it);
* frames lost, inbound: every 20 ms frame sent is compared byte for byte with the server's
  recording of that track (silence is sent as μ-law 0x7F, which the recorder's 0xFF gap fill
  cannot imitate); outbound: bot audio the server synthesized (its log) or sent (``/metrics``)
  minus what the client received;
* the server's CPU (``/proc/PID/stat``: the whole process, and its main thread where the gevent
  hub runs), memory (``VmRSS``: at rest after the warm-up call, and the peak during the load),
  ``/metrics`` counters if the server has that route (the server runs with
  ``HUB_BLOCK_THRESHOLD_MS=--hub-threshold-ms``, default 20, so the longest hub block is measured
  above 20 ms), and the latency of a ``GET /`` sent every 250 ms (the hub's responsiveness seen
  from outside); warnings in the server's log, and where the hub monitor caught the hub blocked;
* the client's own lag (how late each send began against its 20 ms schedule) and CPU, so a
  client that fell behind is reported rather than blamed on the server.

Usage: python bench/load.py [--conversations 1,10,25,50] [--forks 100,250,500] [--fork-seconds 30]
       [--fork-burst 1] [--turns 4] [--silent-forks] [--server-env NAME=VALUE ...] [--quick]
       [--out /tmp/load_results.md]
Prints the markdown tables (progress goes to stderr) and writes them to ``--out``.
"""

if __name__ == "__main__":  # patch before anything imports socket/threading
    from gevent import monkey

    monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import signal  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.load_client import (  # noqa: E402
    SILENCE_FRAME, LoadCall, LoadFork, build_fork_plan, distinguishable, fork_schedule, frames_lost, percentile,
)
from tools.twilio_sim.call import dashboard_auth  # noqa: E402
from tools.twilio_sim.frames import FRAME_BYTES, FRAME_MS, SAMPLE_RATE  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
SAMPLE_INTERVAL_S = 0.25
FORWARD_TO = "+15550001000"
SYNTH_LINE = re.compile(r"\[(CA[0-9a-f]+)\] reply \d+: sentence \d+/\d+, (\d+) ms of audio synthesized")
METRIC_NAMES = ("callstream_hub_block_max_seconds", "callstream_hub_blocks_total", "callstream_frames_lost_total",
                "callstream_media_messages_total")


# -- the server process and /proc ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``python app.py`` in a subprocess with its own SQLite file and recordings folder.

    Args:
        work: a folder for the database, recordings and ``server.log``.
        extra_env: more environment variables (strings).
    """

    def __init__(self, work: Path, extra_env: dict[str, str] | None = None):
        self.work = work
        self.recordings = work / "recordings"
        self.log_path = work / "server.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "PORT": str(self.port), "LOG_LEVEL": "info",
                    "DATABASE_URL": f"sqlite:///{work / 'calls.db'}", "RECORDINGS_DIR": str(self.recordings),
                    "MAX_CALLS": "1000", "FORWARD_TO": FORWARD_TO, "SHUTDOWN_GRACE_S": "2", **(extra_env or {})}
        self.process: subprocess.Popen | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def start(self, timeout_s: float = 180.0) -> "Server":
        """Start it and wait until ``GET /`` answers (engines loaded and warmed up).

        Raises:
            RuntimeError: it exited or did not answer within ``timeout_s``.
        """
        import requests

        with open(self.log_path, "w") as log:
            self.process = subprocess.Popen([sys.executable, "app.py"], cwd=REPO, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}; see {self.log_path}")
            try:
                if requests.get(self.url + "/", timeout=1).ok:
                    return self
            except requests.RequestException:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"server did not start in {timeout_s:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        """SIGTERM (graceful shutdown), then SIGKILL after 30 s."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)


def proc_cpu_ticks(pid: int) -> tuple[int, int]:
    """(CPU clock ticks of the whole process, of its main thread), user + system, from /proc."""

    def ticks(path: str) -> int:
        with open(path) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)

    return ticks(f"/proc/{pid}/stat"), ticks(f"/proc/{pid}/task/{pid}/stat")


def proc_memory_kb(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` (peak RSS) of a process, in kB."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                values[name] = int(rest.split()[0])
    return values


def reset_peak_rss(pid: int) -> bool:
    """Reset the process' ``VmHWM`` to its current RSS (Linux ``clear_refs`` 5); False if not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def machine_cpu_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return sum(values) - idle, sum(values)


@dataclass
class CpuSnapshot:
    wall_s: float
    server_ticks: int
    hub_ticks: int
    machine_busy: int
    machine_total: int
    client_s: float

    @classmethod
    def take(cls, pid: int) -> "CpuSnapshot":
        server, hub = proc_cpu_ticks(pid)
        busy, total = machine_cpu_ticks()
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return cls(time.monotonic(), server, hub, busy, total, usage.ru_utime + usage.ru_stime)


@dataclass
class CpuUse:
    """CPU use between two snapshots, in % of one core (machine: % of all cores)."""

    server_pct: float
    hub_pct: float
    client_pct: float
    machine_pct: float
    wall_s: float

    @classmethod
    def between(cls, a: CpuSnapshot, b: CpuSnapshot) -> "CpuUse":
        wall = max(1e-9, b.wall_s - a.wall_s)
        return cls(100 * (b.server_ticks - a.server_ticks) / CLK_TCK / wall,
                   100 * (b.hub_ticks - a.hub_ticks) / CLK_TCK / wall,
                   100 * (b.client_s - a.client_s) / wall,
                   100 * (b.machine_busy - a.machine_busy) / max(1, b.machine_total - a.machine_total), wall)


class Sampler:
    """While running: the server's RSS every 250 ms, its CPU per second, and ``GET /`` latency.

    Attributes:
        rss_kb: sampled VmRSS values, kB.
        cpu_1s_pct: server CPU over each ~1 s interval, % of one core.
        probe_ms: latency of each ``GET /``, ms (a failed probe counts as its timeout, 5000).
    """

    def __init__(self, server: Server):
        self.server = server
        self.rss_kb: list[int] = []
        self.cpu_1s_pct: list[float] = []
        self.probe_ms: list[float] = []
        self._greenlets = []

    def start(self) -> None:
        import gevent

        self._greenlets = [gevent.spawn(self._sample), gevent.spawn(self._probe)]

    def stop(self) -> None:
        import gevent

        gevent.killall(self._greenlets)

    def _sample(self) -> None:
        import gevent

        last = (time.monotonic(), proc_cpu_ticks(self.server.pid)[0])
        while True:
            gevent.sleep(SAMPLE_INTERVAL_S)
            try:
                self.rss_kb.append(proc_memory_kb(self.server.pid)["VmRSS"])
                now = (time.monotonic(), proc_cpu_ticks(self.server.pid)[0])
            except (OSError, KeyError):
                return
            if now[0] - last[0] >= 1.0:
                self.cpu_1s_pct.append(100 * (now[1] - last[1]) / CLK_TCK / (now[0] - last[0]))
                last = now

    def _probe(self) -> None:
        import gevent
        import requests

        session = requests.Session()
        while True:
            began = time.monotonic()
            try:
                session.get(self.server.url + "/", timeout=5).raise_for_status()
                self.probe_ms.append((time.monotonic() - began) * 1000)
            except requests.RequestException:
                self.probe_ms.append(5000.0)
            gevent.sleep(max(0.0, SAMPLE_INTERVAL_S - (time.monotonic() - began)))


def scrape_metrics(url: str) -> dict[tuple[str, tuple], float] | None:
    """``GET /metrics`` parsed: {(sample name, sorted label pairs): value}; None if there is no such route."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    try:
        response = requests.get(url + "/metrics", timeout=10, auth=dashboard_auth())
    except requests.RequestException:
        return None
    if response.status_code != 200:
        return None
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(samples: dict | None, name: str, **labels) -> float | None:
    """One sample's value from ``scrape_metrics`` output, or None."""
    if samples is None:
        return None
    return samples.get((name, tuple(sorted(labels.items()))))


def metric_delta(before: dict | None, after: dict | None, name: str, **labels) -> float | None:
    a, b = metric(before, name, **labels), metric(after, name, **labels)
    if b is None:
        return None
    return b - (a or 0.0)


def read_recording(recordings: Path, call_sid: str, kind: str) -> bytes | None:
    """The μ-law samples of a call's ``inbound``/``outbound`` recording on disk, or None."""
    from audio.wavfile import read_info

    path = recordings / call_sid / f"{kind}.wav"
    try:
        info = read_info(path)
        return path.read_bytes()[info.data_offset:]
    except (OSError, ValueError):
        return None


def wait_finalized(recordings: Path, call_sids: list[str], timeout_s: float) -> int:
    """Wait until every call's recording folder has its ``finalized`` marker; return how many lack it."""
    import gevent

    deadline = time.monotonic() + timeout_s
    missing = list(call_sids)
    while missing and time.monotonic() < deadline:
        missing = [sid for sid in missing if not (recordings / sid / "finalized").exists()]
        if missing:
            gevent.sleep(0.5)
    return len(missing)


def fetch_records(url: str, call_sids: list[str], wait_s: float) -> dict[str, dict | None]:
    """Fetch the call records (10 at a time), each retried until it has ``ended_at`` or ``wait_s`` passed.

    Requests get a long timeout: after a heavy level the server may still be busy (its thread pool
    serves the store too).
    """
    import gevent
    import requests
    from gevent.pool import Pool

    session = requests.Session()
    session.auth = dashboard_auth()  # the server's login, when DASHBOARD_PASSWORD is set here too

    def fetch(call_sid: str) -> dict | None:
        deadline = time.monotonic() + wait_s
        record = None
        while True:
            try:
                response = session.get(f"{url}/api/calls/{call_sid}", timeout=max(5.0, wait_s))
                if response.status_code == 200:
                    record = response.json()
                    if record.get("ended_at"):
                        return record
            except (requests.RequestException, ValueError):
                pass
            if time.monotonic() >= deadline:
                return record
            gevent.sleep(0.5)

    return dict(zip(call_sids, Pool(10).map(fetch, call_sids)))


def short_frame(frame_line: str | None) -> str:
    """``File "/a/b/c.py", line 3, in f`` → ``b/c.py, line 3, in f``."""
    if not frame_line:
        return "?"
    return re.sub(r'^File "(?:.*/)?([^/]+/[^/]+)"', r"\1", frame_line)


def scan_log(path: Path) -> dict:
    """Server log: warnings/errors (normalized, counted), and synthesized ms per call."""
    warnings: dict[str, int] = {}
    synthesized_ms: dict[str, int] = {}
    blocked_in: dict[str, int] = {}  # innermost frame of the hub monitor's stacks
    innermost, own, in_stack = None, None, False
    for line in path.read_text(errors="replace").splitlines() + [""]:
        if in_stack and line.startswith("  "):
            if line.lstrip().startswith("File ") and not line.lstrip().startswith('File "<'):
                innermost = line.strip()
                if str(REPO) in line and "/.venv/" not in line:
                    own = innermost
            continue
        if in_stack:
            key = short_frame(innermost)
            if key.startswith("gevent/hub.py") and key.endswith("in run"):
                key += " (the event loop itself: C code, no Python frame)"
            if own is not None and own != innermost:
                key += f" (from {short_frame(own)})"
            blocked_in[key] = blocked_in.get(key, 0) + 1
            innermost, own, in_stack = None, None, False
        if "gevent hub blocked for" in line and line.rstrip().endswith("(innermost last):"):
            in_stack = True
        match = SYNTH_LINE.search(line)
        if match:
            synthesized_ms[match[1]] = synthesized_ms.get(match[1], 0) + int(match[2])
        if " WARNING " in line or " ERROR " in line or "Traceback" in line:
            text = line.split(": ", 1)[-1] if " WARNING " in line or " ERROR " in line else line
            text = re.sub(r"\[CA[0-9a-f]+\] ", "", text)
            text = re.sub(r"\d+(\.\d+)?", "N", text)[:140]
            if text.startswith("gevent hub blocked") or text.startswith("TWILIO_AUTH_TOKEN is not set"):
                continue  # hub blocks: in the hub column and ``blocked_in``; unsigned requests: expected here
            level = "ERROR" if " ERROR " in line else "WARNING" if " WARNING " in line else "TRACE"
            key = f"{level} {text}"
            warnings[key] = warnings.get(key, 0) + 1
    return {"warnings": warnings, "synthesized_ms": synthesized_ms, "blocked_in": blocked_in}


# -- audio ----------------------------------------------------------------------------------------


def split_at_long_pause(ulaw: bytes, min_pause_ms: int = 700) -> list[bytes]:
    """Cut μ-law 8 kHz audio in the middle of each non-speech run of at least ``min_pause_ms``
    (WebRTC VAD, mode 3, as the server uses), so each part is one utterance for the server."""
    from audio.codec import ulaw_to_pcm16
    from audio.vad import WebRtcVad

    vad = WebRtcVad(mode=3, sample_rate=SAMPLE_RATE, frame_ms=FRAME_MS)
    pcm = ulaw_to_pcm16(ulaw)
    voiced = [vad.is_speech(pcm[i * 2 * FRAME_BYTES:(i + 1) * 2 * FRAME_BYTES]) for i in range(len(ulaw) // FRAME_BYTES)]
    cuts, run_start = [], None
    first_voice = next((i for i, v in enumerate(voiced) if v), None)
    for index, is_voiced in enumerate(voiced + [True]):
        if not is_voiced and run_start is None:
            run_start = index
        elif is_voiced and run_start is not None:
            if first_voice is not None and run_start > first_voice and index < len(voiced) \
                    and (index - run_start) * FRAME_MS >= min_pause_ms:
                cuts.append((run_start + index) // 2)
            run_start = None
    bounds = [0] + [c * FRAME_BYTES for c in cuts] + [len(ulaw)]
    return [ulaw[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


# What each utterance says (tests/data's references; jfk.flac's cut falls after "ask not").
REFERENCES = {
    "jfk.flac[1/2]": "and so my fellow americans ask not",
    "jfk.flac[2/2]": "what your country can do for you ask what you can do for your country",
    "sr_english.wav": "one two three",
}


def load_utterances(corpus: Path) -> list[tuple[str, bytes]]:
    """The caller's utterances: ``jfk.flac`` cut at its long pause, then ``sr_english.wav``; μ-law 8 kHz,
    with 0xFF bytes replaced by 0x7F (``distinguishable``)."""
    from tools.twilio_sim.audio_files import load_audio_ulaw

    utterances = []
    for name in ("jfk.flac", "sr_english.wav"):
        parts = split_at_long_pause(load_audio_ulaw(str(corpus / name)))
        for index, part in enumerate(parts):
            label = name if len(parts) == 1 else f"{name}[{index + 1}/{len(parts)}]"
            utterances.append((label, distinguishable(part)))
    # interleave long and short: jfk part 1, sr, jfk part 2, ...
    long_parts = [u for u in utterances if u[0].startswith("jfk")]
    short = [u for u in utterances if not u[0].startswith("jfk")]
    ordered = []
    for index, part in enumerate(long_parts):
        ordered.append(part)
        if short:
            ordered.append(short[index % len(short)])
    return ordered or utterances


# -- levels ---------------------------------------------------------------------------------------


def ms(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


@dataclass
class LevelCommon:
    """What every level measures about the server and the client."""

    n: int
    cpu: CpuUse | None = None
    cpu_1s_max_pct: float | None = None
    rss_base_mb: float | None = None
    rss_peak_mb: float | None = None
    rss_end_mb: float | None = None
    probe_ms: list[float] = field(default_factory=list)
    lateness_ms: list[float] = field(default_factory=list)
    hub_block_max_ms: float | None = None
    hub_threshold_ms: int = 50
    hub_blocks: float | None = None
    metrics_frames_lost: float | None = None
    metrics_media_in: float | None = None
    metrics_media_out: float | None = None
    errors: list[str] = field(default_factory=list)
    warnings: dict[str, int] = field(default_factory=dict)
    blocked_in: dict[str, int] = field(default_factory=dict)
    client_behind: bool = False

    @property
    def mb_per_call(self) -> float | None:
        if self.rss_peak_mb is None or self.rss_base_mb is None or not self.n:
            return None
        return (self.rss_peak_mb - self.rss_base_mb) / self.n


@dataclass
class ConversationLevel(LevelCommon):
    v2v_ms: list[float] = field(default_factory=list)
    turns_expected: int = 0
    turns_recorded: int = 0
    turns_replied: int = 0
    gaps_ms: list[float] = field(default_factory=list)
    frames_sent_in: int = 0
    frames_lost_in: int | None = None
    frames_lost_out: int | None = None
    out_source: str = ""
    clears: int = 0
    stages_ms: dict[str, list[float]] = field(default_factory=dict)
    refused: int = 0  # calls the webhook refused (admission control)
    wer: list[float] = field(default_factory=list)  # per answered call: its caller turns against what it said
    turn_errors: int = 0  # caller turns the server recorded with an error (a timed-out engine: the caller heard the apology)


@dataclass
class ForkLevel(LevelCommon):
    fork_seconds: float = 0.0
    overlap_s: float = 0.0
    blocked_ms: list[float] = field(default_factory=list)
    frames_sent: int = 0
    frames_lost: int | None = None
    utterances_sent: int = 0
    utterances_transcribed: int = 0
    recognition_errors: int = 0
    recognition_ms: list[float] = field(default_factory=list)
    burst_ticks: int = 1
    prebuild_s: float = 0.0
    started: int = 0


def measure_rest(server: Server, level: LevelCommon) -> dict | None:
    """Memory at rest (after warm-up) and the metrics before the load; resets the peak RSS."""
    import gevent

    gevent.sleep(1.0)
    level.rss_base_mb = proc_memory_kb(server.pid)["VmRSS"] / 1024
    reset_peak_rss(server.pid)
    return scrape_metrics(server.url)


def finish_common(server: Server, level: LevelCommon, sampler: Sampler, before: dict | None,
                  cpu0: CpuSnapshot, cpu1: CpuSnapshot) -> dict | None:
    """Fill in CPU, memory, probe and metrics of a level once its calls are over."""
    level.cpu = CpuUse.between(cpu0, cpu1)
    level.cpu_1s_max_pct = max(sampler.cpu_1s_pct) if sampler.cpu_1s_pct else None
    memory = proc_memory_kb(server.pid)
    peak_kb = max(sampler.rss_kb + [memory.get("VmHWM", 0)])
    level.rss_peak_mb = peak_kb / 1024
    level.probe_ms = sampler.probe_ms
    after = scrape_metrics(server.url)
    max_s = metric(after, "callstream_hub_block_max_seconds")
    level.hub_block_max_ms = None if max_s is None else max_s * 1000
    level.hub_blocks = metric_delta(before, after, "callstream_hub_blocks_total")
    level.metrics_frames_lost = metric_delta(before, after, "callstream_frames_lost_total")
    level.metrics_media_in = metric_delta(before, after, "callstream_media_messages_total", direction="in")
    level.metrics_media_out = metric_delta(before, after, "callstream_media_messages_total", direction="out")
    return after


def server_env(args) -> dict[str, str]:
    """Environment for the server of every level (``--server-env`` last, so it wins)."""
    env = {"HUB_BLOCK_THRESHOLD_MS": str(args.hub_threshold_ms)}
    for item in args.server_env:
        name, _, value = item.partition("=")
        env[name] = value
    return env


def run_conversation_level(n: int, args, utterances: list[tuple[str, bytes]]) -> ConversationLevel:
    import gevent

    level = ConversationLevel(n)
    work = Path(tempfile.mkdtemp(prefix=f"bench-load-conv{n}-"))
    env = {**server_env(args), **({} if args.greeting else {"GREETING": ""})}
    server = Server(work, env).start()
    level.hub_threshold_ms = args.hub_threshold_ms
    audio = [ulaw for _, ulaw in utterances]
    labels = [label for label, _ in utterances]
    payloads: dict[bytes, str] = {}
    try:
        if not args.no_warmup_call:
            warm = LoadCall(server.url, [audio[-1]], time.monotonic(), greeting=args.greeting, payloads=payloads)
            warm.run()
            if warm.error:
                level.errors.append(f"warm-up call: {warm.error}")
        before = measure_rest(server, level)
        start_s = time.monotonic() + 1.0
        calls = []
        for i in range(n):
            order = [audio[(i + k) % len(audio)] for k in range(args.turns)]
            calls.append(LoadCall(server.url, order, start_s + i * args.spread_s / n, greeting=args.greeting,
                                  payloads=payloads))
            calls[-1].reference = " ".join(REFERENCES.get(labels[(i + k) % len(labels)], "") for k in range(args.turns))
        sampler = Sampler(server)
        greenlets = [gevent.spawn(call.run) for call in calls]
        gevent.sleep(max(0.0, start_s - time.monotonic()))
        cpu0 = CpuSnapshot.take(server.pid)
        sampler.start()
        gevent.joinall(greenlets, timeout=args.spread_s + args.turns * 60 + 120)
        cpu1 = CpuSnapshot.take(server.pid)
        sampler.stop()
        gevent.killall([g for g in greenlets if not g.dead])
        finish_common(server, level, sampler, before, cpu0, cpu1)
        sids = [call.call_sid for call in calls if not call.refused]
        records = fetch_records(server.url, sids, wait_s=30)
        missing = wait_finalized(server.recordings, sids, timeout_s=30)
        if missing:
            level.errors.append(f"{missing} call(s) without finalized recordings")
        level.rss_end_mb = proc_memory_kb(server.pid)["VmRSS"] / 1024
    finally:
        server.stop()
    log = scan_log(server.log_path)
    level.warnings = log["warnings"]
    level.blocked_in = log["blocked_in"]
    analyse_conversations(level, calls, records, server, log["synthesized_ms"])
    clean_up(server, args)
    return level


def analyse_conversations(level: ConversationLevel, calls: list[LoadCall], records: dict, server: Server,
                          synthesized_ms: dict[str, int]) -> None:
    from tools.twilio_sim.latency import pair_latencies

    lost_in, lost_out, out_known = 0, 0, True
    received_media = 0
    for call in calls:
        if call.refused:
            level.refused += 1
            continue
        level.lateness_ms += [v * 1000 for v in call.tick_lateness_s]
        level.gaps_ms += [g * 1000 for g in call.underruns.gaps_s]
        level.clears += call.clears_received
        level.turns_expected += call.utterance_count
        received_media += call.media_received
        if call.error:
            level.errors.append(f"{call.call_sid}: {call.error}")
        if call.violations:
            level.errors.append(f"{call.call_sid}: {call.violations} invalid message(s) from the server")
        record = records.get(call.call_sid)
        if record is None:
            level.errors.append(f"{call.call_sid}: no call record")
            continue
        turns = record.get("turns") or []
        level.turns_recorded += sum(1 for t in turns if t.get("speaker") == "caller")
        level.turn_errors += sum(1 for t in turns if t.get("speaker") == "caller" and t.get("error"))
        reference = getattr(call, "reference", "")
        if reference.strip():
            from tools.wer import word_error_rate

            heard = " ".join(t.get("text") or "" for t in turns if t.get("speaker") == "caller")
            level.wer.append(word_error_rate(reference, heard))
        for entry in pair_latencies(call.caller_ends(turns), call.replies.replies):
            if entry["voice_to_voice_ms"] is not None:
                level.v2v_ms.append(entry["voice_to_voice_ms"])
                level.turns_replied += 1
        for turn in turns:
            for stage, value in (turn.get("latency_ms") or {}).items():
                level.stages_ms.setdefault(stage, []).append(value)
        level.frames_sent_in += len(call.inbound) // FRAME_BYTES
        recorded = read_recording(server.recordings, call.call_sid, "inbound")
        if recorded is None:
            level.errors.append(f"{call.call_sid}: no inbound recording")
        else:
            lost_in += frames_lost(bytes(call.inbound), recorded, call.first_timestamp_ms * SAMPLE_RATE // 1000)
        if call.call_sid in synthesized_ms and not call.clears_received:
            missing_ms = synthesized_ms[call.call_sid] - call.media_bytes_received * 1000 / SAMPLE_RATE
            lost_out += round(max(0.0, missing_ms) / FRAME_MS)
        else:
            out_known = False
    level.frames_lost_in = lost_in
    if level.metrics_media_out is not None:
        level.frames_lost_out = max(0, round(level.metrics_media_out - received_media))
        level.out_source = "/metrics"
    elif out_known:
        level.frames_lost_out = lost_out
        level.out_source = "server log"
    level.client_behind = client_behind(level.lateness_ms)


def clean_up(server: Server, args) -> None:
    """Delete a level's recordings and database (hundreds of MB at 500 forks) unless ``--keep``; the log stays."""
    import shutil

    print(f"server log: {server.log_path}", file=sys.stderr)
    if not args.keep:
        shutil.rmtree(server.recordings, ignore_errors=True)
        for path in server.work.glob("calls.db*"):
            path.unlink(missing_ok=True)


def client_behind(lateness_ms: list[float]) -> bool:
    """The client fell behind its schedule: over 5% of sends more than one tick (20 ms) late."""
    p95 = percentile(lateness_ms, 0.95)
    return p95 is not None and p95 > FRAME_MS


def build_fork_plans(n: int, args, utterances: list[tuple[str, bytes]], burst: int):
    """Every fork's stream (ForkPlan) for a level; seeded, so a level is the same every run."""
    ticks = round(args.fork_seconds * 1000 / FRAME_MS)
    audio = [] if getattr(args, "silent_forks", False) else [ulaw for _, ulaw in utterances]
    payloads: dict[bytes, str] = {}
    plans = []
    for i in range(n):
        rng = random.Random(1000 + i)
        inbound, spoken = fork_schedule(audio, ticks, first_pause_ticks=rng.randrange(0, 150),
                                        pause_ticks=[rng.randrange(75, 200) for _ in range(8)], rotation=i)
        plan = build_fork_plan(("inbound", "outbound"), {"inbound": inbound, "outbound": [SILENCE_FRAME] * ticks},
                               burst, payloads=payloads)
        plan.utterances = [("inbound", a, b) for a, b in spoken]
        plans.append(plan)
    return plans


def run_fork_level(n: int, args, utterances: list[tuple[str, bytes]]) -> ForkLevel:
    import gevent

    level = ForkLevel(n, fork_seconds=args.fork_seconds, burst_ticks=args.fork_burst)
    began = time.monotonic()
    plans = build_fork_plans(n, args, utterances, args.fork_burst)
    level.prebuild_s = time.monotonic() - began
    warm_args = argparse.Namespace(**{**vars(args), "fork_seconds": 3.0})
    warm_plan = build_fork_plans(1, warm_args, utterances, args.fork_burst)[0]
    work = Path(tempfile.mkdtemp(prefix=f"bench-load-fork{n}-"))
    server = Server(work, server_env(args)).start()
    level.hub_threshold_ms = args.hub_threshold_ms
    try:
        if not args.no_warmup_call:
            warm = LoadFork(server.url, warm_plan, time.monotonic())
            warm.run()
            if warm.error:
                level.errors.append(f"warm-up fork: {warm.error}")
        before = measure_rest(server, level)
        ramp_s = min(10.0, max(1.0, n / 50))
        start_s = time.monotonic() + 1.0
        forks = [LoadFork(server.url, plan, start_s + i * ramp_s / n) for i, plan in enumerate(plans)]
        sampler = Sampler(server)
        greenlets = [gevent.spawn(fork.run) for fork in forks]
        gevent.sleep(max(0.0, start_s - time.monotonic()))
        cpu0 = CpuSnapshot.take(server.pid)
        sampler.start()
        gevent.joinall(greenlets, timeout=ramp_s + args.fork_seconds + 120)
        cpu1 = CpuSnapshot.take(server.pid)
        sampler.stop()
        gevent.killall([g for g in greenlets if not g.dead])
        finish_common(server, level, sampler, before, cpu0, cpu1)
        sids = [fork.call_sid for fork in forks if fork.stream_started_s is not None]
        missing = wait_finalized(server.recordings, sids, timeout_s=60 + n * 0.2)
        if missing:
            level.errors.append(f"{missing} fork(s) without finalized recordings")
        records = fetch_records(server.url, sids, wait_s=60)
        level.rss_end_mb = proc_memory_kb(server.pid)["VmRSS"] / 1024
    finally:
        server.stop()
    log = scan_log(server.log_path)
    level.warnings = log["warnings"]
    level.blocked_in = log["blocked_in"]
    analyse_forks(level, forks, records, server)
    clean_up(server, args)
    return level


def analyse_forks(level: ForkLevel, forks: list[LoadFork], records: dict, server: Server) -> None:
    starts = [f.stream_started_s for f in forks if f.stream_started_s is not None]
    ends = [f.media_ended_s for f in forks if f.media_ended_s is not None and f.stream_started_s is not None]
    level.started = len(starts)
    level.overlap_s = max(0.0, min(ends) - max(starts)) if starts and ends else 0.0
    lost = 0
    for fork in forks:
        level.lateness_ms += [v * 1000 for v in fork.send_lateness_s]
        level.blocked_ms += [v * 1000 for v in fork.send_blocked_s]
        if fork.error:
            level.errors.append(f"{fork.call_sid}: {fork.error}")
        if fork.violations:
            level.errors.append(f"{fork.call_sid}: {fork.violations} message(s) from the server on a fork")
        if fork.callback_failures:
            level.errors.append(f"{fork.call_sid}: status callbacks failed: {fork.callback_failures}")
        if fork.stream_started_s is None:
            continue
        plan = fork.plan
        start_byte = plan.first_timestamp_ms * SAMPLE_RATE // 1000
        for track in plan.tracks:
            sent = b"".join(plan.frames[track][:fork.ticks_sent])
            level.frames_sent += fork.ticks_sent
            recorded = read_recording(server.recordings, fork.call_sid, track)
            if recorded is None:
                level.errors.append(f"{fork.call_sid}: no {track} recording")
                lost += fork.ticks_sent
            else:
                lost += frames_lost(sent, recorded, start_byte)
        whole = [(track, a, b) for track, a, b in plan.utterances if b <= fork.ticks_sent]
        level.utterances_sent += len(whole)
        record = records.get(fork.call_sid)
        if record is None:
            level.errors.append(f"{fork.call_sid}: no call record")
            continue
        turns = [t for t in record.get("turns") or [] if t.get("speaker") == "caller"]
        level.recognition_errors += sum(1 for t in turns if t.get("error"))
        level.recognition_ms += [t["latency_ms"]["recognition"] for t in turns
                                 if isinstance(t.get("latency_ms"), dict) and "recognition" in t["latency_ms"]]
        texts = [(t["start_ms"], t["end_ms"]) for t in turns if (t.get("text") or "").strip() and not t.get("error")
                 and isinstance(t.get("start_ms"), int) and isinstance(t.get("end_ms"), int)]
        for _, first_tick, end_tick in whole:
            start_ms = plan.first_timestamp_ms + first_tick * FRAME_MS
            end_ms = plan.first_timestamp_ms + end_tick * FRAME_MS
            if any(a < end_ms and b > start_ms for a, b in texts):
                level.utterances_transcribed += 1
    level.frames_lost = lost
    level.client_behind = client_behind(level.lateness_ms)


# -- report ---------------------------------------------------------------------------------------


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0f}"


def hub_cell(level: LevelCommon) -> str:
    if level.hub_block_max_ms is None:
        return "n/a"
    threshold = level.hub_threshold_ms
    longest = f"< {threshold}" if level.hub_block_max_ms == 0 else f"{level.hub_block_max_ms:.0f}"
    blocks = "" if level.hub_blocks is None else f" ({level.hub_blocks:.0f} over {threshold})"
    return longest + blocks


def cpu_cell(level: LevelCommon) -> str:
    if level.cpu is None:
        return "–"
    return f"{level.cpu.server_pct:.0f} / {level.cpu.hub_pct:.0f} / {pct(level.cpu_1s_max_pct)}"


def lag_cell(level: LevelCommon) -> str:
    p95 = percentile(level.lateness_ms, 0.95)
    text = f"{ms(p95, 1)} / {ms(max(level.lateness_ms) if level.lateness_ms else None)}"
    return text + (" **behind**" if level.client_behind else "")


def probe_cell(level: LevelCommon) -> str:
    return f"{ms(percentile(level.probe_ms, 0.5))} / {ms(max(level.probe_ms) if level.probe_ms else None)}"


def conversation_table(levels: list[ConversationLevel]) -> str:
    lines = [
        "| N | admitted / refused | v2v p50 ms | v2v p95 ms | v2v max ms | turns replied/spoken | turn errors | WER mean / max "
        "| outbound gaps: count / longest ms "
        "| hub block max ms | GET / p50 / max ms | server CPU %: process / hub thread / max 1 s | machine CPU % "
        "| client CPU % | client lag p95 / max ms | RSS MB: rest / peak | MB/call | frames lost in / out |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lv in levels:
        gaps = f"{len(lv.gaps_ms)} / {ms(max(lv.gaps_ms) if lv.gaps_ms else 0)}"
        lost_in = "–" if lv.frames_lost_in is None else f"{lv.frames_lost_in} of {lv.frames_sent_in}"
        lost_out = "–" if lv.frames_lost_out is None else f"{lv.frames_lost_out} ({lv.out_source})"
        lines.append(
            f"| {lv.n} | {lv.n - lv.refused} / {lv.refused} | {ms(percentile(lv.v2v_ms, 0.5))} | {ms(percentile(lv.v2v_ms, 0.95))} "
            f"| {ms(max(lv.v2v_ms) if lv.v2v_ms else None)} | {lv.turns_replied}/{lv.turns_expected} | {lv.turn_errors} "
            f"| {ms(sum(lv.wer) / len(lv.wer) if lv.wer else None, 2)} / {ms(max(lv.wer) if lv.wer else None, 2)} | {gaps} "
            f"| {hub_cell(lv)} | {probe_cell(lv)} | {cpu_cell(lv)} | {pct(lv.cpu.machine_pct if lv.cpu else None)} "
            f"| {pct(lv.cpu.client_pct if lv.cpu else None)} | {lag_cell(lv)} "
            f"| {ms(lv.rss_base_mb)} / {ms(lv.rss_peak_mb)} | {ms(lv.mb_per_call, 1)} | {lost_in} / {lost_out} |")
    return "\n".join(lines)


def stage_table(levels: list[ConversationLevel]) -> str:
    stages = ("endpoint", "recognition", "responder", "synthesis", "total")
    lines = ["| N | " + " | ".join(f"{s} p50 / p95" for s in stages) + " |", "|---|" + "---|" * len(stages)]
    for lv in levels:
        cells = [f"{ms(percentile(lv.stages_ms.get(s, []), 0.5))} / {ms(percentile(lv.stages_ms.get(s, []), 0.95))}"
                 for s in stages]
        lines.append(f"| {lv.n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fork_table(levels: list[ForkLevel]) -> str:
    lines = [
        "| N | media s per fork (all N streaming) | client lag p95 / max ms | send blocked p95 / max ms "
        "| hub block max ms | GET / p50 / max ms | server CPU %: process / hub thread / max 1 s | machine CPU % "
        "| client CPU % | RSS MB: rest / peak / after | MB/call | frames lost | utterances transcribed / sent "
        "| recognition p50 / max s, errors |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for lv in levels:
        blocked = f"{ms(percentile(lv.blocked_ms, 0.95), 1)} / {ms(max(lv.blocked_ms) if lv.blocked_ms else None)}"
        lost = "–" if lv.frames_lost is None else f"{lv.frames_lost} of {lv.frames_sent}"
        started = "" if lv.started == lv.n else f" ({lv.started} started)"
        p50 = percentile(lv.recognition_ms, 0.5)
        recognition = (f"{ms(None if p50 is None else p50 / 1000, 1)} / "
                       f"{ms(max(lv.recognition_ms) / 1000 if lv.recognition_ms else None, 1)}, {lv.recognition_errors}")
        lines.append(
            f"| {lv.n}{started} | {lv.fork_seconds:g} ({lv.overlap_s:.0f}) | {lag_cell(lv)} | {blocked} "
            f"| {hub_cell(lv)} | {probe_cell(lv)} | {cpu_cell(lv)} | {pct(lv.cpu.machine_pct if lv.cpu else None)} "
            f"| {pct(lv.cpu.client_pct if lv.cpu else None)} "
            f"| {ms(lv.rss_base_mb)} / {ms(lv.rss_peak_mb)} / {ms(lv.rss_end_mb)} | {ms(lv.mb_per_call, 2)} "
            f"| {lost} | {lv.utterances_transcribed} / {lv.utterances_sent} "
            f"| {recognition} |")
    return "\n".join(lines)


def machine_info() -> str:
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    except OSError:
        pass
    with open("/proc/meminfo") as f:
        total_kb = int(f.readline().split()[1])
    load = os.getloadavg()
    return (f"Machine: {model}, {os.cpu_count()} cores, {total_kb / 1024 / 1024:.0f} GiB, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}; load average at start "
            f"{load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f}. Server: `python app.py`, default offline engines "
            f"(whisper tiny.en, piper), echo responder, SQLite, recordings on (folder). Client: one gevent process "
            f"(bench/load_client.py).")


def notes_section(conversations: list[ConversationLevel], forks: list[ForkLevel], args) -> str:
    lines = []
    for kind, levels in (("conversations", conversations), ("forks", forks)):
        for lv in levels:
            if lv.client_behind:
                lines.append(f"- {kind} N={lv.n}: the client fell behind its 20 ms schedule (lag p95 over 20 ms): "
                             "the server numbers of this level are not trustworthy.")
            if lv.errors:
                shown = "; ".join(lv.errors[:5]) + (f"; … ({len(lv.errors)} in all)" if len(lv.errors) > 5 else "")
                lines.append(f"- {kind} N={lv.n}: errors: {shown}")
            if lv.warnings:
                top = sorted(lv.warnings.items(), key=lambda item: -item[1])[:4]
                lines.append(f"- {kind} N={lv.n}: server log: " + "; ".join(f"{count}× `{text}`" for text, count in top))
            if lv.blocked_in:
                top = sorted(lv.blocked_in.items(), key=lambda item: -item[1])[:3]
                lines.append(f"- {kind} N={lv.n}: hub blocks logged with a stack, innermost frame: "
                             + "; ".join(f"{count}× `{where}`" for where, count in top))
            if isinstance(lv, ForkLevel):
                lines.append(f"- forks N={lv.n}: {lv.prebuild_s:.1f} s to build all messages before the run"
                             + (f"; sent in bursts of {lv.burst_ticks} ticks" if lv.burst_ticks > 1 else ""))
            if isinstance(lv, ConversationLevel) and lv.clears:
                lines.append(f"- conversations N={lv.n}: {lv.clears} `clear`(s) received (barge-in: the caller "
                             "spoke again before the reply came)")
    return "\n".join(lines)


def report(conversations: list[ConversationLevel], forks: list[ForkLevel], args, info: str) -> str:
    parts = ["## Load: concurrent conversations and forks (issue #5)", "", info, ""]
    if args.server_env:
        parts += ["Server environment: " + ", ".join(f"`{item}`" for item in args.server_env) + ".", ""]
    if conversations:
        parts += [f"### Conversations ({args.turns} turns each, starts spread over {args.spread_s:g} s)", "",
                  conversation_table(conversations), "",
                  "Server-side latency per reply (call record `latency_ms`, ms):", "", stage_table(conversations), ""]
    if forks:
        speech = "silence only" if args.silent_forks else "speech on the caller's track"
        parts += [f"### Listen-only forks (both tracks, {speech}, {args.fork_seconds:g} s of media each, "
                  "recording on)", "",
                  fork_table(forks), ""]
    parts += [
        "Columns: *v2v*: voice-to-voice, the caller's last voiced frame sent → first reply media received (wall "
        "clock). *outbound gaps*: the playback buffer ran dry inside a reply and more of it came later. *hub block "
        "max*: `callstream_hub_block_max_seconds` from `/metrics` (n/a: no such route; the server runs with "
        f"`HUB_BLOCK_THRESHOLD_MS={args.hub_threshold_ms}`, so only longer blocks count), with the count of blocks "
        "over that threshold. *GET /*: latency of a health request every 250 ms during the load. *server CPU*: % of one "
        "core over the load (whole process / its main thread, where the gevent hub runs / the busiest second). "
        "*machine CPU*: % of all cores, every process. *client lag*: how late the client began each send against "
        "its 20 ms schedule (**behind**: p95 over 20 ms). *send blocked*: how long each send took (the server not "
        "reading). *RSS*: at rest after a warm-up call, peak during the load (and after the load, for forks); "
        "*MB/call* = (peak − rest) / N (at small N it is mostly the speech engines' working memory, not per-call "
        "state). *frames lost in*: 20 ms frames sent that the server's recording does not "
        "hold byte for byte; *out*: bot audio the server synthesized or sent minus what the client received. "
        "*utterances transcribed*: utterances sent whole that a caller turn with text in the call record overlaps "
        "once the forks ended; *recognition*: the turns' `latency_ms.recognition` (queueing included) and the "
        "turns whose recognition failed or timed out.", ""]
    notes = notes_section(conversations, forks, args)
    if notes:
        parts += ["Notes:", "", notes, ""]
    return "\n".join(parts)


def run_level(run, level_class, n: int, args, utterances):
    """Run one level; if it fails, report the failure in its row instead of losing the other levels."""
    import traceback

    try:
        return run(n, args, utterances)
    except Exception as exc:  # noqa: BLE001 - e.g. the server died under load
        traceback.print_exc()
        level = level_class(n)
        level.errors.append(f"the level failed: {type(exc).__name__}: {exc}")
        return level


def parse_levels(text: str) -> list[int]:
    if text.strip().lower() in ("", "none", "0"):
        return []
    return [int(part) for part in text.split(",") if part.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", help="concurrent conversations per level, e.g. 1,10,25,50 "
                        "(default; --quick: 1,3; 'none' to skip)")
    parser.add_argument("--forks", help="concurrent forks per level, e.g. 100,250,500 (default; --quick: 10,50; "
                        "'none' to skip)")
    parser.add_argument("--fork-seconds", type=float, help="media per fork, s (default 30; --quick: 10)")
    parser.add_argument("--fork-burst", type=int, default=1,
                        help="ticks per send for forks: 1 = every 20 ms like Twilio (default), 5 = 100 ms bursts")
    parser.add_argument("--silent-forks", action="store_true",
                        help="forks send silence only (no speech, so no recognition): isolates the media path's cost")
    parser.add_argument("--turns", type=int, help="utterances per conversation (default 4; --quick: 2)")
    parser.add_argument("--spread-s", type=float, default=5.0, help="conversation starts spread over this, s")
    parser.add_argument("--no-greeting", dest="greeting", action="store_false",
                        help="run the server with GREETING empty (by default callers wait for the greeting)")
    parser.add_argument("--hub-threshold-ms", type=int, default=20,
                        help="HUB_BLOCK_THRESHOLD_MS for the server: hub blocks longer than this are measured (default 20)")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="an environment variable for the server (repeatable), e.g. ENDPOINT_SILENCE_MS=500")
    parser.add_argument("--keep", action="store_true",
                        help="keep each level's recordings and database (by default only server.log is kept)")
    parser.add_argument("--no-warmup-call", action="store_true", help="measure memory at rest without a warm-up call")
    parser.add_argument("--quick", action="store_true", help="small levels and short calls, for a smoke test")
    parser.add_argument("--corpus", type=Path, default=REPO / "tests" / "data")
    parser.add_argument("--out", type=Path, default=Path("/tmp/load_results.md"), help="markdown file to write")
    args = parser.parse_args()
    args.conversations = parse_levels(args.conversations or ("1,3" if args.quick else "1,10,25,50"))
    args.forks = parse_levels(args.forks or ("10,50" if args.quick else "100,250,500"))
    args.fork_seconds = args.fork_seconds or (10.0 if args.quick else 30.0)
    args.turns = args.turns or (2 if args.quick else 4)
    if args.fork_burst < 1 or args.turns < 1 or args.fork_seconds <= 0:
        parser.error("--fork-burst and --turns must be >= 1, --fork-seconds > 0")
    if any("=" not in item or not item.partition("=")[0] for item in args.server_env):
        parser.error("--server-env takes NAME=VALUE")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # the server inherits it too
    info = machine_info()
    utterances = load_utterances(args.corpus)
    print("utterances: " + ", ".join(f"{name} {len(ulaw) / SAMPLE_RATE:.1f} s" for name, ulaw in utterances),
          file=sys.stderr)
    conversations, forks = [], []
    for n in args.conversations:
        print(f"conversations N={n} ...", file=sys.stderr, flush=True)
        conversations.append(run_level(run_conversation_level, ConversationLevel, n, args, utterances))
        print(conversation_table(conversations[-1:]), file=sys.stderr, flush=True)
    for n in args.forks:
        print(f"forks N={n} ...", file=sys.stderr, flush=True)
        forks.append(run_level(run_fork_level, ForkLevel, n, args, utterances))
        print(fork_table(forks[-1:]), file=sys.stderr, flush=True)
    text = report(conversations, forks, args, info)
    print(text)
    args.out.write_text(text + "\n")
    print(f"written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
