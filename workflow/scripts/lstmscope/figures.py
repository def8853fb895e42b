"""Saving figures: every figure is written as PNG and SVG, atomically."""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")  # never open a window; the library never calls plt.show()
import matplotlib.pyplot as plt  # noqa: E402

from .atomic import atomic_path  # noqa: E402


def save_figure(fig: "matplotlib.figure.Figure", png: str | os.PathLike, svg: str | os.PathLike,
                dpi: int = 150) -> None:
    """Save ``fig`` to ``png`` and ``svg`` and close it."""
    try:
        with atomic_path(png) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
        with atomic_path(svg) as tmp:
            fig.savefig(tmp, bbox_inches="tight", format="svg")
    finally:
        plt.close(fig)
