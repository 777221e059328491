"""Re-make the real noise and backchannel recordings in ``noise/`` and ``backchannel/`` from Debian packages.

Every file is cut (and, for babble, mixed) from real recordings that Debian ships; nothing is
synthesised. Fetch and unpack the packages, then run this with the unpacked root:

    mkdir -p /tmp/noise && cd /tmp/noise
    apt-get download lincity-ng-data asterisk-moh-opsound-wav micropolis-data \\
        asterisk-core-sounds-en-wav asterisk-core-sounds-es-wav asterisk-core-sounds-fr-wav \\
        asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav
    for deb in *.deb; do dpkg-deb -x "$deb" root; done
    python tests/data/make_noise.py /tmp/noise/root

Files written (mono FLAC, PCM16, at the source's own rate: nothing is upsampled):
    noise/street.flac   lincity-ng-data 2.9~git20150314-5: sounds/TraficHigh1-3 + TraficLow1-3, 11 025 Hz,
                        channels averaged, one after another (24 s)
    noise/music.flac    asterisk-moh-opsound-wav 2.03-1.1: moh/reno_project-system.wav 60.0-80.0 s, 8 kHz
    noise/babble.flac   asterisk-core-sounds-*-wav 1.6.1-1: six streams of prompts (en/es Allison Smith,
                        fr June Wallack, it Carlo Flora, ru IvrvoiceRU, and a second en stream), each the
                        prompts in name order with their leading/trailing silence cut, at equal RMS, summed, 20 s
                        at 8 kHz
    backchannel/uhuh.flac  micropolis-data 0.0.20071228-10: res/sounds/uhuh.wav ("uh-huh"), 22 050 Hz
    backchannel/one.flac   tests/data/sr_english.wav 0.00-0.75 s: the word "one", 44.1 kHz

tests/data/README.md records the licence of each.
"""

import sys
from pathlib import Path

import numpy as np
import soundfile as sf

HERE = Path(__file__).resolve().parent
BABBLE_S = 20.0
BABBLE_STREAMS = (  # (folder under usr/share/asterisk/sounds, first prompt index)
    ("en_US_f_Allison", 0), ("es_MX_f_Allison", 0), ("fr_CA_f_June", 0), ("it_IT_m_Carlo", 0),
    ("ru_RU_f_IvrvoiceRU", 0), ("en_US_f_Allison", 200),
)
TRIM_DB = -40.0  # a prompt's leading/trailing samples below this (relative to its peak) are cut


def read_mono(path: Path) -> tuple[np.ndarray, int]:
    samples, rate = sf.read(path, dtype="float64", always_2d=True)
    return samples.mean(axis=1), rate


def write(path: Path, samples: np.ndarray, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.clip(samples, -1, 32767 / 32768), rate, format="FLAC", subtype="PCM_16")
    print(f"{path.relative_to(HERE)}: {rate} Hz, {len(samples) / rate:.2f} s, {path.stat().st_size} B")


def trimmed(samples: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(samples) >= np.abs(samples).max() * 10 ** (TRIM_DB / 20))
    return samples[loud[0]:loud[-1] + 1] if len(loud) else samples[:0]


def babble(sounds: Path) -> tuple[np.ndarray, int]:
    rate, length = 8000, int(BABBLE_S * 8000)
    mix = np.zeros(length)
    for folder, first in BABBLE_STREAMS:
        stream = []
        for path in sorted((sounds / folder).glob("*.wav"))[first:]:
            samples, file_rate = read_mono(path)
            assert file_rate == rate, path
            stream.append(trimmed(samples))
            if sum(map(len, stream)) >= length:
                break
        voice = np.concatenate(stream)[:length]
        mix += voice / np.sqrt(np.mean(voice ** 2))
    return mix * (0.1 / np.sqrt(np.mean(mix ** 2))), rate  # -20 dBFS RMS


def main(root: Path) -> None:
    games = root / "usr/share/games"
    traffic = [read_mono(games / f"lincity-ng/sounds/Trafic{level}{n}.wav") for level in ("High", "Low")
               for n in (1, 2, 3)]
    assert {rate for _, rate in traffic} == {11025}
    write(HERE / "noise/street.flac", np.concatenate([samples for samples, _ in traffic]), 11025)
    music, rate = read_mono(root / "usr/share/asterisk/moh/reno_project-system.wav")
    write(HERE / "noise/music.flac", music[60 * rate:80 * rate], rate)
    write(HERE / "noise/babble.flac", *babble(root / "usr/share/asterisk/sounds"))
    write(HERE / "backchannel/uhuh.flac", *read_mono(games / "micropolis/res/sounds/uhuh.wav"))
    speech, rate = read_mono(HERE / "sr_english.wav")
    write(HERE / "backchannel/one.flac", speech[:int(0.75 * rate)], rate)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
