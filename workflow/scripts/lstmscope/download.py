"""Download WikiText-2 (or any set of files) with checksums, retries and a timeout.

``url`` may be ``http(s)://``, ``file://`` or a plain directory. Every file is
written under a temporary name; only when all of them are verified are they
renamed to their final names, so a failure leaves no file behind. A download killed
outright (SIGKILL, a power cut) leaves its partial file, ``.<name>.part<pid>``; the next
download of the same file removes it.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Mapping

from .atomic import fsync, remove_leftovers

log = logging.getLogger(__name__)

_CHUNK = 1 << 16


class DownloadError(RuntimeError):
    """A download failed for good; the message is one line naming the URL."""


class _Retryable(Exception):
    pass


def file_url(base: str, name: str) -> str:
    """The location of ``name`` under ``base`` (URL or directory)."""
    if "://" in base:
        return base.rstrip("/") + "/" + urllib.parse.quote(name)
    return str(Path(base) / name)


def _fetch_once(url: str, dest: Path, timeout: float) -> str:
    """Copy ``url`` to ``dest``; return the SHA-256 of what was written."""
    h = hashlib.sha256()
    scheme = urllib.parse.urlparse(url).scheme if "://" in url else ""
    if scheme in ("", "file"):
        src = Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path)) if scheme else Path(url)
        if not src.is_file():
            raise DownloadError(f"{url}: no such file")
        with open(src, "rb") as fin, open(dest, "wb") as fout:
            while block := fin.read(_CHUNK):
                h.update(block)
                fout.write(block)
        return h.hexdigest()
    if scheme not in ("http", "https"):
        raise DownloadError(f"{url}: unsupported URL scheme {scheme!r}; use http(s)://, file:// or a directory")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as fout:
            expected_len = resp.headers.get("Content-Length")
            got = 0
            while True:
                block = resp.read(_CHUNK)
                if not block:
                    break
                got += len(block)
                h.update(block)
                fout.write(block)
            if expected_len is not None and got != int(expected_len):
                raise _Retryable(f"truncated: received {got} of {expected_len} bytes")
    except urllib.error.HTTPError as exc:
        if exc.code in (408, 429) or exc.code >= 500:
            raise _Retryable(f"HTTP {exc.code} {exc.reason}") from exc
        raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except (socket.timeout, TimeoutError) as exc:
        raise _Retryable(f"timed out after {timeout:g} s") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (socket.timeout, TimeoutError)):
            raise _Retryable(f"timed out after {timeout:g} s") from exc
        raise _Retryable(f"{exc.reason}") from exc
    except (ConnectionError, OSError, http.client.HTTPException) as exc:
        # HTTPException: a connection closed in the middle of a chunked response (IncompleteRead) or a
        # garbled status line, neither of which is an OSError
        raise _Retryable(f"{type(exc).__name__}: {exc}") from exc
    return h.hexdigest()


def fetch_verified(url: str, dest: Path, sha256: str, timeout: float = 60.0, retries: int = 3,
                   backoff: float = 1.0, sleep: Callable[[float], None] = time.sleep) -> None:
    """Fetch ``url`` into ``dest`` and check its SHA-256, retrying transient failures.

    A checksum mismatch is retried too (a proxy may have served a broken copy); the
    final error names the URL and the expected and actual checksum.
    """
    last = ""
    for attempt in range(retries + 1):
        if attempt:
            wait = backoff * 2 ** (attempt - 1)
            log.warning("%s: attempt %d failed (%s); retrying in %.1f s", url, attempt, last, wait)
            sleep(wait)
        try:
            actual = _fetch_once(url, dest, timeout)
        except _Retryable as exc:
            last = str(exc)
            continue
        except DownloadError:
            with contextlib.suppress(FileNotFoundError):
                dest.unlink()
            raise
        if actual == sha256:
            return
        last = f"checksum mismatch: expected sha256 {sha256}, got {actual}"
    with contextlib.suppress(FileNotFoundError):
        dest.unlink()
    raise DownloadError(f"{url}: {last} (after {retries + 1} attempts)")


def download_files(base_url: str, checksums: Mapping[str, str], out_paths: Mapping[str, str | os.PathLike],
                   timeout: float = 60.0, retries: int = 3, backoff: float = 1.0,
                   sleep: Callable[[float], None] = time.sleep) -> None:
    """Download every ``name`` of ``checksums`` from ``base_url`` to ``out_paths[name]``.

    The files appear under their final names only when all of them are verified.
    """
    tmp_paths: dict[str, Path] = {}
    try:
        for name, sha in checksums.items():
            final = Path(out_paths[name])
            final.parent.mkdir(parents=True, exist_ok=True)
            remove_leftovers(final, f".{final.name}.part", left_by="a killed download")
            tmp = final.with_name(f".{final.name}.part{os.getpid()}")
            tmp_paths[name] = tmp
            url = file_url(base_url, name)
            start = time.monotonic()
            fetch_verified(url, tmp, sha, timeout=timeout, retries=retries, backoff=backoff, sleep=sleep)
            log.info("%s: %d bytes verified in %.2f s", url, tmp.stat().st_size, time.monotonic() - start)
        for tmp in tmp_paths.values():
            fsync(tmp)  # the data on disk before a name points at it
        for name, tmp in tmp_paths.items():
            os.replace(tmp, out_paths[name])
        for folder in {Path(p).parent for p in out_paths.values()}:
            with contextlib.suppress(OSError):  # some network file systems cannot fsync a folder
                fsync(folder)  # and the renames themselves
    finally:
        for tmp in tmp_paths.values():
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


