"""Logging for pipeline jobs: stderr and the logging module go to the job's log file.

Every job logs what it did and how long it took; an error ends in one line that
names the problem (the traceback stays in the log for debugging). SIGTERM (Snakemake
cancelling a job, a scheduler's time limit) stops a job as Ctrl-C does, by an exception,
so the output it was writing under a temporary name is removed on the way out; a stopped
job says so in one line, without a traceback, and exits with 143 (SIGTERM) or 130 (Ctrl-C). An
exception with an ``exit_status`` (training stopped by a signal after saving its state) ends the same way,
its message as the line.
"""
from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
import time
import traceback
from typing import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised as Ctrl-C's KeyboardInterrupt is (exit status 128 + 15 rather than Ctrl-C's 130)."""

    exit_status = 143


def _terminate(signum, frame) -> None:
    raise Terminated


def stop_status(exc: KeyboardInterrupt) -> int:
    """The exit status of a command stopped by Ctrl-C (130) or SIGTERM (143)."""
    return exc.exit_status if isinstance(exc, Terminated) else 130


@contextlib.contextmanager
def stopped_by_sigterm() -> Iterator[None]:
    """While a command or job runs, SIGTERM (``kill``, a scheduler's time limit) stops it as Ctrl-C does, by an exception,
    so an output being written under a temporary name is removed on the way out, not left behind; the handler
    before is put back after. Outside the main thread (a command called from a thread) it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


_previous_hook = None  # sys.excepthook before the first job_log that failed


def _quiet_hook(exc_type, exc, tb) -> None:
    """``sys.excepthook`` after a job failed: an exception :func:`job_log` has reported (its line on stderr, its
    traceback in the log) ends the process without a second word (exit status 1); any other as before."""
    if not getattr(exc, "lstmscope_reported", False):
        _previous_hook(exc_type, exc, tb)


def failure_line(stage: str, exc: BaseException) -> str:
    """The line a failed job leaves on stderr: the library's errors (its own classes, ``ValueError``s and
    ``OSError``s) say what is wrong and name the file; any other error, or one without a message, is named by its
    type as well (``KeyError: 'layer1/h'``, ``MemoryError``)."""
    text = str(exc)
    ours = type(exc).__module__.split(".")[0] == __name__.split(".")[0] or isinstance(exc, (ValueError, OSError))
    if not text or not ours:
        text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return f"lstmscope {stage}: {text}"


@contextlib.contextmanager
def job_log(path: str | None, stage: str) -> Iterator[logging.Logger]:
    """Send stderr and logging to ``path``; log the stage's start, end and duration."""
    global _previous_hook
    stream = open(path, "w", buffering=1, encoding="utf-8") if path else sys.stderr
    old_stderr = sys.stderr
    sys.stderr = stream
    root = logging.getLogger()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logger = logging.getLogger(f"lstmscope.{stage}")
    start = time.monotonic()
    logger.info("%s: started", stage)
    try:
        with stopped_by_sigterm():
            yield logger
        logger.info("%s: finished in %.1f s", stage, time.monotonic() - start)
    except KeyboardInterrupt as exc:
        how = "SIGTERM" if isinstance(exc, Terminated) else "Ctrl-C"
        logger.error("%s: stopped by %s after %.1f s; its outputs are not written", stage, how,
                     time.monotonic() - start)
        print(f"lstmscope {stage}: stopped by {how}; its outputs are not written", file=old_stderr)
        raise SystemExit(stop_status(exc)) from None
    except BaseException as exc:
        status = getattr(exc, "exit_status", None)
        if isinstance(status, int):  # a stop the job chose (training saved its state), not a failure
            logger.error("%s: stopped after %.1f s: %s", stage, time.monotonic() - start, exc)
            print(f"lstmscope {stage}: {exc}", file=old_stderr)
            raise SystemExit(status) from None
        traceback.print_exc(file=stream)
        logger.error("%s: failed after %.1f s: %s", stage, time.monotonic() - start, exc)
        # Snakemake shows the job's stderr only through the log; keep one line on the real stderr (the traceback
        # is in the log, above). The exception goes on (a caller in the same process sees it); if it ends the
        # process, Python's hook would print the traceback on stderr again: _quiet_hook leaves it out.
        print(failure_line(stage, exc), file=old_stderr)
        exc.lstmscope_reported = True  # every exception takes attributes (BaseException has a __dict__)
        if _previous_hook is None:  # once: a hook that wrapped this one since is not called back by it
            _previous_hook = sys.excepthook
        sys.excepthook = _quiet_hook
        raise
    finally:
        root.removeHandler(handler)
        sys.stderr = old_stderr
        if path:
            stream.close()
