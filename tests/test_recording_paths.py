"""Recording folders stay inside RECORDINGS_DIR: the second wall behind the SID check at start (F2)."""

import os

import pytest

from audio.recording import CallRecorder
from core.sids import filename_part, is_call_sid, is_stream_sid
from runtime.call_keeper import file_recordings, recording_dir

CALL_SID = "CA" + "0123456789abcdef" * 2


class FakeStore:
    def __init__(self):
        self.saved = []

    def save_recording(self, call_sid, kind, **fields):
        self.saved.append((call_sid, kind))


def test_sid_shapes():
    assert is_call_sid(CALL_SID) and is_call_sid("76ac3c36-56da-4a3e-a0d6-b5f8df6da9ad")
    assert is_stream_sid("MZ" + "a" * 32) and not is_stream_sid(CALL_SID) and not is_call_sid("MZ" + "a" * 32)
    for bad in ["..", "", "CA1", "CA" + "0" * 31, "CA" + "0" * 32 + "\n", None, 5, "ca" + "0" * 32]:
        assert not is_call_sid(bad)
    assert filename_part(CALL_SID) == CALL_SID and filename_part('a"b/../c\r\n') == "a_b____c__" and filename_part("") == "unknown"


def test_a_call_folder_is_inside_the_recordings_dir(tmp_path):
    root = tmp_path / "recordings"
    assert recording_dir(root, CALL_SID) == root / CALL_SID


@pytest.mark.parametrize("call_sid", ["..", ".", "", "../outside", "CA1/../..", "/etc", "CA" + "0" * 32 + "/.."])
def test_anything_but_a_call_sid_is_refused(tmp_path, call_sid):
    with pytest.raises(ValueError):
        recording_dir(tmp_path / "recordings", call_sid)


def test_a_symlink_out_of_the_recordings_dir_is_refused(tmp_path):
    root, outside = tmp_path / "recordings", tmp_path / "elsewhere"
    root.mkdir()
    outside.mkdir()
    os.symlink(outside / CALL_SID, root / CALL_SID)  # a folder that resolves outside the root
    with pytest.raises(ValueError, match="not inside"):
        recording_dir(root, CALL_SID)


def test_database_mode_removes_a_call_folder_but_never_another(tmp_path):
    root = tmp_path / "recordings"
    files = CallRecorder(recording_dir(root, CALL_SID)).close()
    file_recordings(FakeStore(), CALL_SID, files, in_database=True)
    assert not (root / CALL_SID).exists() and root.exists()
    # A recording written by an older version into RECORDINGS_DIR/.. (the F2 attack): filed, but the
    # folder (here the parent of RECORDINGS_DIR, holding everything else) is not removed.
    victim = tmp_path / "keep.txt"
    victim.write_text("precious")
    files = CallRecorder(root / "..").close()
    store = FakeStore()
    file_recordings(store, "..", files, in_database=True)
    assert len(store.saved) == 3 and victim.read_text() == "precious" and root.exists()
