"""Damaging a checkpoint as a disk or a transfer does: bytes inside it overwritten, its size kept."""
from __future__ import annotations

import zipfile
from pathlib import Path


def damage_largest_part(path: Path) -> str:
    """Overwrite 16 bytes in the middle of the largest part of a zip archive (torch.save's format: the largest
    tensor) and return that part's name. The archive still opens, and torch.load reads the other bytes."""
    with zipfile.ZipFile(path) as archive:
        part = max(archive.infolist(), key=lambda i: i.file_size)
    with open(path, "r+b") as fh:  # the part's data begins after its local header: 30 bytes, its name, its extra
        fh.seek(part.header_offset + 26)
        name_len, extra_len = int.from_bytes(fh.read(2), "little"), int.from_bytes(fh.read(2), "little")
        fh.seek(part.header_offset + 30 + name_len + extra_len + part.file_size // 2)
        fh.write(b"\x7f" * 16)
    return part.filename
