"""The download stage against a loopback HTTP server serving the shared WikiText-2 copy."""
from __future__ import annotations

import hashlib
import http.server
import threading
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from conftest import WIKITEXT2 as DATA
from lstmscope.download import DownloadError, download_files

SPLITS = ("train", "valid", "test")


def checksums() -> dict[str, str]:
    """The digests config.yaml gives, as the download stage gets them (the data folder need hold no SHA256SUMS)."""
    sha = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))["data"]["sha256"]
    return {f"{s}.txt": sha[s] for s in SPLITS}


class _Handler(http.server.SimpleHTTPRequestHandler):
    mode = "ok"  # set per server: ok | truncate | slow | corrupt | error500-once

    def __init__(self, *args, **kwargs):
        super().__init__(*args, directory=str(DATA), **kwargs)

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):  # noqa: N802
        server = self.server
        server.requests += 1
        mode = server.mode
        if mode == "slow":
            time.sleep(2.0)
        if mode == "error500-once" and server.requests == 1:
            self.send_error(500, "boom")
            return
        if mode == "chunked-cut" or mode == "chunked-cut-once" and server.requests == 1:
            # chunked transfer (no Content-Length), the connection closed in the middle of a chunk
            self.wfile.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10000\r\n" + b"x" * 100)
            self.wfile.flush()
            self.close_connection = True
            return
        path = DATA / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404, "Not Found")
            return
        body = path.read_bytes()
        if mode == "corrupt":
            body = body[:-10] + b"XXXXXXXXXX"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if mode == "truncate":
            body = body[: len(body) // 2]
        try:
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture
def server(wikitext2):
    servers = []

    def start(mode: str = "ok") -> str:
        httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        httpd.mode, httpd.requests = mode, 0
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return f"http://127.0.0.1:{httpd.server_address[1]}"

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def _outs(tmp_path: Path) -> dict[str, Path]:
    return {f"{s}.txt": tmp_path / "out" / f"{s}.txt" for s in SPLITS}


def _no_files(tmp_path: Path) -> bool:
    out = tmp_path / "out"
    return not out.exists() or not any(out.iterdir())


def test_http_download_verifies_and_writes_all_splits(server, tmp_path):
    outs = _outs(tmp_path)
    download_files(server(), checksums(), outs, timeout=10, retries=0)
    for name, path in outs.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == checksums()[name]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(outs)  # no temp files left


def test_partial_files_of_killed_downloads_go_with_the_next_download(tmp_path, wikitext2, caplog):
    """A download killed outright leaves ``.<name>.part<pid>``; the next download of that file removes it, and
    nothing else (another file's, or a name that only looks alike)."""
    outs = _outs(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    left = [out / ".train.txt.part4242", out / ".test.txt.part7"]
    kept = [out / ".train.txt.partial", out / ".notes.txt.part42", out / "train.txt.part42"]
    for path in left + kept:
        path.write_text("half of it")
    caplog.set_level("INFO", logger="lstmscope.atomic")  # the removal is atomic.remove_leftovers's
    download_files(DATA.as_uri(), checksums(), outs, retries=0)
    assert sorted(p.name for p in out.iterdir()) == sorted([*outs, *(p.name for p in kept)])
    assert "removed .train.txt.part4242 (10 bytes) left by a killed download" in caplog.text


def test_each_split_is_on_disk_before_its_name_points_at_it(tmp_path, wikitext2, monkeypatch):
    """A power cut after the renames must not leave a split under its final name but cut short: every part file
    is flushed (fsync) before it is renamed, and the folder after the renames."""
    import os

    events, fsync, replace = [], os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))),
                                                 fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append(("rename", str(a))), replace(a, b))[1])
    outs = _outs(tmp_path)
    download_files(DATA.as_uri(), checksums(), outs, retries=0)
    renamed = [i for i, (kind, _) in enumerate(events) if kind == "rename"]
    assert len(renamed) == len(outs)
    for i in renamed:
        assert ("fsync", events[i][1]) in events[:i], events
    assert ("fsync", str(tmp_path / "out")) in events[renamed[-1]:], events


@pytest.mark.parametrize("as_url", [True, False], ids=["file-url", "directory"])
def test_file_url_and_directory(tmp_path, as_url, wikitext2):
    outs = _outs(tmp_path)
    base = DATA.as_uri() if as_url else str(DATA)
    download_files(base, checksums(), outs, retries=0)
    for name, path in outs.items():
        assert path.read_bytes() == (DATA / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(outs)  # no temp files left


def test_404_fails_at_once_naming_the_url(server, tmp_path):
    base = server()
    sums = {"missing.txt": "0" * 64}
    with pytest.raises(DownloadError, match=r"^http://127\.0\.0\.1:\d+/missing\.txt: HTTP 404"):
        download_files(base, sums, {"missing.txt": tmp_path / "out" / "missing.txt"}, retries=3,
                       sleep=lambda s: pytest.fail("a 404 must not be retried"))
    assert _no_files(tmp_path)


@pytest.mark.parametrize("as_url", [True, False])
def test_a_missing_local_file_fails_at_once_naming_it(tmp_path, as_url):
    """A file:// URL or folder without the file: nothing a wait would change, so no retry."""
    base = (tmp_path / "nowhere").as_uri() if as_url else str(tmp_path / "nowhere")
    with pytest.raises(DownloadError, match=r"nowhere/wiki\.test\.tokens: no such file$"):
        download_files(base, {"wiki.test.tokens": "0" * 64}, {"wiki.test.tokens": tmp_path / "out" / "t"},
                       retries=3, sleep=lambda s: pytest.fail("a missing local file must not be retried"))
    assert not (tmp_path / "out" / "t").exists()


def test_checksum_mismatch_names_expected_and_actual(server, tmp_path):
    base = server("corrupt")
    sums = checksums()
    waits = []
    with pytest.raises(DownloadError) as err:
        download_files(base, sums, _outs(tmp_path), retries=2, sleep=waits.append)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"{base}/train.txt: checksum mismatch: expected sha256 {sums['train.txt']}, got ")
    actual = msg.split(", got ")[1].split()[0]
    assert len(actual) == 64 and actual != sums["train.txt"]
    assert waits == [1.0, 2.0]  # exponential back-off between the three attempts
    assert _no_files(tmp_path)


def test_truncated_response_is_an_error(server, tmp_path):
    base = server("truncate")
    size = (DATA / "train.txt").stat().st_size  # the server sends half, after a Content-Length of all of it
    # (http.client may notice the short body first, as IncompleteRead: a truncation too, not a checksum's catch)
    with pytest.raises(DownloadError, match=rf"/train\.txt: (truncated: received {size // 2} of {size} bytes|"
                                            r"IncompleteRead: .*) \(after 2 attempts\)$"):
        download_files(base, checksums(), _outs(tmp_path), retries=1, sleep=lambda s: None)
    assert _no_files(tmp_path)


def test_a_chunked_response_cut_short_is_retried_then_an_error(server, tmp_path):
    waits = []
    download_files(server("chunked-cut-once"), checksums(), _outs(tmp_path), retries=2, sleep=waits.append)
    assert waits == [1.0] and all(p.is_file() for p in _outs(tmp_path).values())
    with pytest.raises(DownloadError, match=r"/train\.txt: IncompleteRead: .* \(after 2 attempts\)$"):
        download_files(server("chunked-cut"), checksums(), _outs(tmp_path / "b"), retries=1, sleep=lambda s: None)
    assert _no_files(tmp_path / "b")


def test_timeout_is_an_error(server, tmp_path):
    base = server("slow")
    with pytest.raises(DownloadError, match=r"/train\.txt: timed out after 0\.3 s \(after 2 attempts\)"):
        download_files(base, checksums(), _outs(tmp_path), timeout=0.3, retries=1, sleep=lambda s: None)
    assert _no_files(tmp_path)


def test_transient_server_error_is_retried(server, tmp_path):
    base = server("error500-once")
    waits = []
    download_files(base, checksums(), _outs(tmp_path), retries=2, sleep=waits.append)
    assert waits == [1.0]
    assert all(p.is_file() for p in _outs(tmp_path).values())


def test_failure_of_a_later_split_leaves_no_earlier_split(server, tmp_path):
    sums = checksums()
    sums["test.txt"] = "f" * 64  # the last file fails verification
    with pytest.raises(DownloadError, match="test.txt: checksum mismatch"):
        download_files(server(), sums, _outs(tmp_path), retries=0)
    assert _no_files(tmp_path)


def test_unsupported_scheme(tmp_path):
    with pytest.raises(DownloadError, match=r"^ftp://example\.org/train\.txt: unsupported URL scheme 'ftp'"):
        download_files("ftp://example.org", {"train.txt": "0" * 64}, {"train.txt": tmp_path / "x"}, retries=0)
