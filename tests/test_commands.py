"""The console scripts (lstmscope.commands): each runs its command's main, and one stopped as it starts, while it
imports torch, says so in one line instead of an interrupted import's traceback."""
from __future__ import annotations

import importlib.metadata
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lstmscope import commands
from neurons_support import tiny  # noqa: F401 (fixture)
from conftest import skip_or_fail

SCRIPTS = {"lstmscope-heatmap": ("heatmap", "heatmap_cli"), "lstmscope-ablate": ("ablate", "ablation_cli"),
           "lstmscope-dump": ("dump", "dump_cli"), "lstmscope-explorer": ("explorer", "explorer_cli")}


def _installed() -> dict[str, str]:
    scripts = {e.name: e.value for e in importlib.metadata.entry_points(group="console_scripts")}
    if "lstmscope-heatmap" not in scripts:
        skip_or_fail("lstmscope is not installed (pip install -e .)")
    return scripts


@pytest.mark.parametrize("script", SCRIPTS)
def test_each_console_script_runs_its_commands_main(script, capsys):
    function, module = SCRIPTS[script]
    assert _installed()[script] == f"lstmscope.commands:{function}"
    with pytest.raises(SystemExit) as stop:
        getattr(commands, function)(["--help"])
    assert stop.value.code == 0
    from argparse import ArgumentParser

    assert isinstance(importlib.import_module(f"lstmscope.{module}").build_parser(), ArgumentParser)
    assert capsys.readouterr().out.startswith(f"usage: {script} ")


def _libraries(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return ""


@pytest.mark.skipif(not Path("/proc/self/maps").is_file(), reason="reads /proc/<pid>/maps to time the signal")
@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_command_stopped_while_it_imports_torch_says_so_in_one_line(tiny, tmp_path, sig, status):  # noqa: F811
    """Ctrl-C (or SIGTERM) in the first second, while the command's module imported torch, printed the import's
    traceback (KeyboardInterrupt) or, for SIGTERM, nothing. The signal is sent once torch's library is loaded into
    the process (its memory map names it): inside the command's import, or just after it."""
    _installed()
    script = os.path.join(os.path.dirname(sys.executable), "lstmscope-dump")
    text = tmp_path / "t.txt"
    text.write_text("the film .\n", encoding="utf-8")
    out = tmp_path / "t.h5"
    proc = subprocess.Popen([script, str(tiny.checkpoint), str(text), "--vocabulary", str(tiny.vocabulary), "-o",
                             str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while "libtorch" not in _libraries(proc.pid) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err in ("lstmscope-dump: stopped; nothing written\n", "lstmscope-dump: stopped\n",
                   f"lstmscope-dump: stopped; {out} not written\n"), err
    assert not out.exists()
