"""Atomic writes: a failed or killed writer never leaves a file under the final name, and what a killed
one leaves behind is removed by the next write of the same file."""
from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap

import pytest

from lstmscope.atomic import atomic_path, write_text

KILLED_WRITER = textwrap.dedent("""
    import os, signal, sys
    from lstmscope.atomic import atomic_path
    with atomic_path(sys.argv[1]) as tmp:
        tmp.write_bytes(b"half of the data")
        os.kill(os.getpid(), signal.SIGKILL)  # as a time limit or the OOM killer does: no clean-up runs
""")


def test_a_killed_writer_leaves_no_final_file_and_the_next_write_removes_its_leftover(tmp_path, caplog):
    final = tmp_path / "table.csv"
    r = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(final)], capture_output=True, timeout=60)
    assert r.returncode == -signal.SIGKILL
    assert not final.exists()
    (leftover,) = tmp_path.glob(".table.tmp*.csv")
    # files that are not this file's temporary files stay
    others = [tmp_path / ".table.tmp12.png", tmp_path / ".tables.tmp12.csv", tmp_path / ".table.tmpx.csv",
              tmp_path / "table.tmp12.csv"]
    for other in others:
        other.write_text("keep")
    with caplog.at_level(logging.INFO, logger="lstmscope.atomic"):
        write_text(final, "a,b\n1,2\n")
    assert final.read_text() == "a,b\n1,2\n" and not leftover.exists()
    assert f"removed {leftover.name} (16 bytes) left by a killed process" in caplog.text
    assert all(other.read_text() == "keep" for other in others)


def test_an_exception_leaves_the_old_file_and_no_temporary_file(tmp_path):
    final = tmp_path / "model.pt"
    final.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_bytes(b"new but broken")
        raise RuntimeError("stop")
    assert final.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]
