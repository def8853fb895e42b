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


STOPPED_JOB = textwrap.dedent("""
    import sys, time
    from lstmscope.atomic import atomic_path
    from lstmscope.joblog import job_log
    with job_log(sys.argv[1], "demo"):
        with atomic_path(sys.argv[2]) as tmp:
            tmp.write_text("half of it")
            print("writing", flush=True)
            time.sleep(60)
""")


FAILING_JOB = textwrap.dedent("""
    import sys
    from lstmscope.atomic import atomic_path
    from lstmscope.joblog import job_log
    with job_log(sys.argv[1], "demo"):
        with atomic_path(sys.argv[2]) as tmp:
            tmp.write_text("half of it")
            raise eval(sys.argv[3])
""")


@pytest.mark.parametrize("error, said", [
    ('ValueError(f"{sys.argv[2]}: a bad value")', "{out}: a bad value"),  # the library's errors name the file
    ('KeyError("layer1/h")', "KeyError: 'layer1/h'"),  # any other is named by its type too
    ("MemoryError()", "MemoryError"),
], ids=["ours", "key", "no-message"])
def test_a_failing_job_says_what_failed_in_one_line_and_keeps_the_traceback_in_its_log(tmp_path, error, said):
    """Snakemake shows a job's stderr: one line naming the problem, exit status 1; the traceback is for the log."""
    log, out = tmp_path / "demo.log", tmp_path / "out.csv"
    done = subprocess.run([sys.executable, "-c", FAILING_JOB, str(log), str(out), error], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1 and done.stderr == f"lstmscope demo: {said.format(out=out)}\n", done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.log"]
    text = log.read_text()
    assert "Traceback" in text and "demo: failed after" in text and error.split("(")[0] in text, text


def test_after_a_failed_job_another_error_of_the_process_keeps_its_traceback(tmp_path):
    """Only the reported exception goes without its traceback; the hook leaves any other to Python's."""
    script = textwrap.dedent("""
        import sys
        from lstmscope.joblog import job_log
        try:
            with job_log(sys.argv[1], "demo"):
                raise ValueError("reported")
        except ValueError as exc:
            caught = exc  # a caller in the same process gets the exception
        raise RuntimeError(f"another, after {caught}")
    """)
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "demo.log")], capture_output=True, text=True,
                          timeout=60)
    lines = done.stderr.splitlines()
    assert done.returncode == 1 and lines[0] == "lstmscope demo: reported", done.stderr
    assert lines[1].startswith("Traceback") and lines[-1] == "RuntimeError: another, after reported", done.stderr


def test_a_table_written_again_goes_without_the_record_of_the_one_it_replaces(tmp_path):
    """A table's record describes the table it was written for: a new table takes its name without it (its job
    writes the new record after it), so neither a library call nor a reader in between meets the old one; a write
    that fails leaves both."""
    import pandas as pd

    from lstmscope.atomic import table_record, write_table
    from lstmscope.checked_files import read_table
    from lstmscope.provenance import record_table

    table = tmp_path / "t.csv"
    write_table(pd.DataFrame({"a": [1, 2]}), table)
    record = record_table(table)
    assert record == table_record(table) and record.is_file()
    with pytest.raises(RuntimeError), atomic_path(table) as tmp:
        tmp.write_text("a\n3\n")
        raise RuntimeError("stop")
    assert record.is_file() and read_table(table, ["a"], "table", ValueError)["a"].tolist() == [1, 2]
    write_table(pd.DataFrame({"a": [3]}), table)
    assert not record.exists() and read_table(table, ["a"], "table", ValueError)["a"].tolist() == [3]
    record.write_text("{")  # a record damaged
    with pytest.raises(ValueError, match=rf"^{record}: not a readable table record \(JSONDecodeError: "):
        read_table(table, ["a"], "table", ValueError)


@pytest.mark.parametrize("sig,how,status", [(signal.SIGTERM, "SIGTERM", 143), (signal.SIGINT, "Ctrl-C", 130)],
                         ids=["SIGTERM", "Ctrl-C"])
def test_a_job_stopped_by_a_signal_leaves_no_file_and_says_so_in_one_line(tmp_path, sig, how, status):
    """Snakemake cancelling a job, or a scheduler's time limit, sends SIGTERM: the job stops as Ctrl-C stops it,
    its half-written output goes, and its log and stderr say so without a traceback."""
    log, out = tmp_path / "demo.log", tmp_path / "out.csv"
    proc = subprocess.Popen([sys.executable, "-c", STOPPED_JOB, str(log), str(out)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "writing\n", proc.stderr.read()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status
    assert err == f"lstmscope demo: stopped by {how}; its outputs are not written\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.log"]  # neither the output nor its temporary file
    text = log.read_text()
    assert f"demo: stopped by {how} after" in text and "Traceback" not in text, text
