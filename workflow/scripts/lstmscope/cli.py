"""Checks shared by the commands (``lstmscope-heatmap``, ``-ablate``, ``-dump``): an argument they could not use is
one line naming it, before anything is computed."""
from __future__ import annotations

import os
import zipfile


def check_output(path: str, option: str) -> None:
    """An output the command could not write is an error before anything is computed, naming the option."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise ValueError(f"{option} {path}: is a folder; give a file name")
    if not os.path.isdir(folder):
        raise ValueError(f"{option} {path}: the folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{option} {path}: the folder {folder} is not writable")


def check_checkpoint_file(checkpoint: str, order: str) -> None:
    """A file that is not a checkpoint at all (another argument given first, a metrics.json, a copy cut short)
    gets a line naming ``order`` (the order of the command's arguments), not torch's page on unpickling. A
    missing file is left to the loader, which names it."""
    if not os.path.isfile(checkpoint):
        return
    with open(checkpoint, "rb") as fh:
        head = fh.read(8)
    if head == b"\x89HDF\r\n\x1a\n":
        raise ValueError(f"{checkpoint}: an HDF5 file, not a checkpoint; {order}")
    if not zipfile.is_zipfile(checkpoint):
        raise ValueError(f"{checkpoint}: not a checkpoint written by torch.save (a complete "
                         "results/models/<model>/model.pt)")
