"""Twilio's side of a call around its stream: the REST API it answers, and the callbacks it makes.

* **Outbound calls** (``--answer``): the server asks the REST API stand-in
  (``tools.twilio_sim.rest_api``) to create a call; ``OutboundCall`` is what Twilio then does:
  the call's progress to its ``StatusCallback`` (``initiated``, ``ringing``, ``in-progress``
  when answered, ``completed`` at the end; form fields ``CallSid``, ``AccountSid``,
  ``CallStatus``, ``Direction``, ``From``, ``To``, ``Timestamp``), the webhook ``Url`` requested with
  ``Direction=outbound-api``, and with ``AsyncAmd``, the ``AsyncAmdStatusCallback`` once the
  detection has decided (``CallSid``, ``AccountSid``, ``AnsweredBy``, ``MachineDetectionDuration``
  in ms; Twilio's "Answering Machine Detection"): ``human`` after the called party's first words
  and ``MachineDetectionSpeechEndThreshold`` (1200 ms by default) of silence, or, with
  ``MachineDetection=DetectMessageEnd``, ``machine_end_beep`` when a voicemail greeting's beep ends.
* **Transfers**: a REST update with new ``Twiml`` replaces the call's TwiML; Twilio ends the
  media stream (``stop``) and follows the new TwiML: its ``<Dial>`` targets are reported, not dialled.

Network code (requests), imported inside the functions so that callsim can monkey-patch first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

SPEECH_END_THRESHOLD_MS = 1200
"""Twilio's default ``MachineDetectionSpeechEndThreshold``: the silence after speech that ends a
human's greeting (Answering Machine Detection, optional tuning parameters)."""
CALLBACK_TIMEOUT_S = 15.0


@dataclass
class OutboundCall:
    """A call the server placed through the REST API stand-in: its ``create`` request and what came of it.

    Attributes:
        call_sid: the SID the stand-in gave it.
        form: the ``create`` request's form (``To``, ``From``, ``Url``, ``StatusCallback``,
            ``MachineDetection``, ``AsyncAmd``, ``AsyncAmdStatusCallback``…).
        callbacks: ``{"kind" ("status" | "amd"), "value", "status_code", "error"}`` per callback sent.
    """

    call_sid: str
    form: dict[str, str]
    callbacks: list[dict] = field(default_factory=list)

    @property
    def webhook_url(self) -> str:
        return self.form.get("Url", "")

    @property
    def machine_detection(self) -> bool:
        return self.form.get("AsyncAmd") == "true" and bool(self.form.get("AsyncAmdStatusCallback"))

    def webhook_form(self, account_sid: str) -> dict[str, str]:
        """The fields Twilio POSTs to ``Url`` when the called party answers."""
        return {"AccountSid": account_sid, "ApiVersion": "2010-04-01", "CallSid": self.call_sid, "CallStatus": "in-progress",
                "Direction": "outbound-api", "From": self.form.get("From", ""), "To": self.form.get("To", ""),
                "Called": self.form.get("To", ""), "Caller": self.form.get("From", "")}

    def send_status(self, status: str, account_sid: str, signer) -> None:
        """POST the call's progress (``CallStatus``) to its ``StatusCallback``, if it has one."""
        url = self.form.get("StatusCallback")
        if url:
            form = {**self.webhook_form(account_sid), "CallStatus": status,
                    "Timestamp": datetime.now(timezone.utc).strftime("%a, %d %b %Y %H:%M:%S +0000")}
            self._post("status", status, url, form, signer)

    def send_answered_by(self, answered_by: str, duration_ms: int, account_sid: str, signer) -> None:
        """POST the detection's result to ``AsyncAmdStatusCallback``."""
        form = {"AccountSid": account_sid, "CallSid": self.call_sid, "AnsweredBy": answered_by,
                "MachineDetectionDuration": str(duration_ms)}
        self._post("amd", answered_by, self.form["AsyncAmdStatusCallback"], form, signer)

    def _post(self, kind: str, value: str, url: str, form: dict[str, str], signer) -> None:
        import requests

        headers = signer.headers(url, form) if signer is not None else {}
        status_code, error = None, None
        try:
            status_code = requests.post(url, data=form, headers=headers, timeout=CALLBACK_TIMEOUT_S).status_code
        except requests.RequestException as exc:
            error = str(exc)
        self.callbacks.append({"kind": kind, "value": value, "status_code": status_code, "error": error})
        print(f"{'AMD' if kind == 'amd' else 'call status'} callback {value}: POST {url.split('?')[0]} -> "
              f"{status_code if status_code is not None else error}", flush=True)


def beep_pcm(sample_rate: int, duration_ms: int = 500, frequency_hz: float = 1000.0):
    """A voicemail beep: a sine at ``frequency_hz``, ``duration_ms`` long, at -6 dBFS with 10 ms
    ramps, as float64 mono samples in [-1, 1] at ``sample_rate`` Hz."""
    import numpy as np

    count = sample_rate * duration_ms // 1000
    t = np.arange(count) / sample_rate
    tone = 0.5 * np.sin(2 * np.pi * frequency_hz * t)
    ramp = min(count // 2, sample_rate // 100)
    envelope = np.ones(count)
    envelope[:ramp] = np.linspace(0, 1, ramp)
    envelope[count - ramp:] = np.linspace(1, 0, ramp)
    return tone * envelope
