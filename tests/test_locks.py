"""The output-directory lock: a second writer is refused naming the holder; a dead holder's lock is taken over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from bertkit.locks import LOCK_NAME, OutputLockedError, is_lock_file, output_lock

_HOLD = textwrap.dedent(
    """
    import sys, time
    from bertkit.locks import output_lock
    with output_lock(sys.argv[1], purpose="holder"):
        print("held", flush=True)
        time.sleep(60)
    """
)


def test_second_writer_is_refused_with_the_holders_pid(tmp_path):
    out = tmp_path / "ds"
    proc = subprocess.Popen([sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(OutputLockedError, match=rf"pid {proc.pid}.*holder"):
            with output_lock(out):
                pass
    finally:
        proc.kill()
        proc.wait()
    # the holder died without releasing: the kernel dropped the flock, the next writer takes over (with a note)
    with output_lock(out, purpose="second") as path:
        info = json.loads(path.read_text())
        assert info["pid"] == os.getpid() and info["purpose"] == "second"
    assert not (out / LOCK_NAME).exists()


def test_same_process_twice_is_refused_and_released_on_error(tmp_path):
    with output_lock(tmp_path / "d"):
        with pytest.raises(OutputLockedError):
            with output_lock(tmp_path / "d"):
                pass
    with pytest.raises(RuntimeError):
        with output_lock(tmp_path / "d"):
            raise RuntimeError("boom")
    assert not (tmp_path / "d" / LOCK_NAME).exists()
    with output_lock(tmp_path / "d"):
        pass


def test_a_file_is_not_a_directory(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(Exception, match="not a directory"):
        with output_lock(tmp_path / "f"):
            pass
    assert is_lock_file(tmp_path / LOCK_NAME) and not is_lock_file(tmp_path / "manifest.json")
