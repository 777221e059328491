"""Write docs/configuration.md from the settings table (``core.settings.SETTINGS``).

The settings table is the single source of every setting's name, default and meaning; this page
is generated from it so the two cannot drift (``tests/test_config_doc.py`` fails when the page is
stale). Run after changing a setting::

    python tools/config_doc.py           # rewrite docs/configuration.md
    python tools/config_doc.py --check   # exit 1 if it is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.settings import SETTINGS  # noqa: E402

PAGE = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

HEADER = """# Configuration

Environment variables, or a `.env` file in the working directory (real environment variables win).
A value that does not parse stops the server at start-up with a message naming the variable.
This page is generated from the settings table in `core/settings.py` by `python tools/config_doc.py`.

| variable | default | meaning |
|---|---|---|
"""

FOOTER = """
Cloud engines: `RECOGNIZER=google` uses SpeechRecognition's `recognize_google` (online);
`SYNTHESIZER=gtts` uses gTTS, whose MP3 is decoded with soundfile (no ffmpeg). Both need the network;
when it is unreachable a turn's recognition or synthesis fails and is logged, and the call goes on.
"""


def default_cell(default: object) -> str:
    """The table's rendering of a default: `true`/`false`, `(empty)` or the value in backquotes."""
    if isinstance(default, bool):
        return "`true`" if default else "`false`"
    if default == "":
        return "(empty)"
    return f"`{default}`"


def render() -> str:
    """The whole page, Markdown."""
    rows = [f"| `{s.name}` | {default_cell(s.default)} | {s.help} |" for s in SETTINGS]
    return HEADER + "\n".join(rows) + "\n" + FOOTER


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the page is out of date")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if PAGE.read_text() != text:
            print(f"{PAGE} is out of date: run python tools/config_doc.py", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
