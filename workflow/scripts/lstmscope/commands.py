"""The console scripts' entry points: each imports its command's module (torch, matplotlib, h5py: about a second)
under the same Ctrl-C and SIGTERM handling as the command itself, so that a command stopped as it starts says so in
one line instead of printing the traceback of an import interrupted. A module of its own that imports nothing heavy:
the script imports it first.
"""
from __future__ import annotations

import importlib
import sys
from typing import Callable, Sequence

from .joblog import stop_status, stopped_by_sigterm


def run(module: str, prog: str, argv: Sequence[str] | None = None) -> int:
    """``lstmscope.<module>.main(argv)``, the module imported first; stopped (Ctrl-C, SIGTERM), one line and exit
    status 130 or 143: "nothing written" while the module is imported, plain "stopped" where the command's own
    handling did not say more (its arguments read, its last line printed after its outputs were written)."""
    started = False
    try:
        with stopped_by_sigterm():
            main: Callable[[Sequence[str] | None], int] = importlib.import_module(f"lstmscope.{module}").main
            started = True
            return main(argv)
    except KeyboardInterrupt as exc:
        print(f"{prog}: stopped" if started else f"{prog}: stopped; nothing written", file=sys.stderr)
        return stop_status(exc)


def heatmap(argv: Sequence[str] | None = None) -> int:
    return run("heatmap_cli", "lstmscope-heatmap", argv)


def ablate(argv: Sequence[str] | None = None) -> int:
    return run("ablation_cli", "lstmscope-ablate", argv)


def dump(argv: Sequence[str] | None = None) -> int:
    return run("dump_cli", "lstmscope-dump", argv)


def explorer(argv: Sequence[str] | None = None) -> int:
    return run("explorer_cli", "lstmscope-explorer", argv)
