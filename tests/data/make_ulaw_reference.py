"""Re-make ``ulaw_reference.npz``: audioop's μ-law tables, the reference for tests/test_codec.py.

Run once with a Python that still has the stdlib ``audioop`` (3.11 or 3.12):

    python tests/data/make_ulaw_reference.py

Arrays written (all 1-D):
    pcm_in   int16[65536]  every int16 value, -32768 … 32767
    encoded  uint8[65536]  audioop.lin2ulaw(pcm_in, 2), one code per input sample
    ulaw_in  uint8[256]    every μ-law code, 0 … 255
    decoded  int16[256]    audioop.ulaw2lin(ulaw_in, 2), one sample per code
"""

import sys
import warnings
from pathlib import Path

import numpy as np

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop  # removed in Python 3.13: this script needs 3.11/3.12


def main() -> None:
    pcm_in = np.arange(-32768, 32768, dtype=np.int16)
    encoded = np.frombuffer(audioop.lin2ulaw(pcm_in.astype("<i2").tobytes(), 2), dtype=np.uint8)
    ulaw_in = np.arange(256, dtype=np.uint8)
    decoded = np.frombuffer(audioop.ulaw2lin(ulaw_in.tobytes(), 2), dtype="<i2").astype(np.int16)
    out = Path(__file__).resolve().with_name("ulaw_reference.npz")
    np.savez_compressed(out, pcm_in=pcm_in, encoded=encoded, ulaw_in=ulaw_in, decoded=decoded)
    print(f"wrote {out} with Python {sys.version.split()[0]}")


if __name__ == "__main__":
    main()
