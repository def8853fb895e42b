"""Logging for pipeline jobs: stderr and the logging module go to the job's log file.

Every job logs what it did and how long it took; an error ends in one line that
names the problem (the traceback stays in the log for debugging).
"""
from __future__ import annotations

import contextlib
import logging
import sys
import time
import traceback
from typing import Iterator


@contextlib.contextmanager
def job_log(path: str | None, stage: str) -> Iterator[logging.Logger]:
    """Send stderr and logging to ``path``; log the stage's start, end and duration."""
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
        yield logger
        logger.info("%s: finished in %.1f s", stage, time.monotonic() - start)
    except BaseException as exc:
        traceback.print_exc(file=stream)
        logger.error("%s: failed after %.1f s: %s", stage, time.monotonic() - start, exc)
        # Snakemake shows the job's stderr only through the log; keep one line on the real stderr.
        print(f"lstmscope {stage}: {exc}", file=old_stderr)
        raise
    finally:
        root.removeHandler(handler)
        sys.stderr = old_stderr
        if path:
            stream.close()
