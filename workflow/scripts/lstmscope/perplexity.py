"""Perplexity of every model: a table and a figure against dropout."""
from __future__ import annotations

import json
import os
from typing import Sequence

import pandas as pd

from .atomic import atomic_path
from .figures import plt, save_figure

COLUMNS = ["model", "dropout", "replicate", "seed", "valid_ppl", "test_ppl", "epochs", "best_epoch", "training_seconds"]


def perplexity_table(metrics_paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """One row per model from its metrics.json, sorted by dropout and replicate."""
    rows = []
    for path in metrics_paths:
        try:
            m = json.loads(open(path, encoding="utf-8").read())
            rows.append({"model": m["model"], "dropout": m["dropout"], "replicate": m["replicate"], "seed": m["seed"],
                         "valid_ppl": m["valid_ppl"], "test_ppl": m["test_ppl"], "epochs": len(m["epochs"]),
                         "best_epoch": m["best_epoch"], "training_seconds": m["training_seconds"]})
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"{path}: not a complete metrics.json ({type(exc).__name__}: {exc})") from exc
    if not rows:
        raise ValueError("no metrics files given")
    return pd.DataFrame(rows, columns=COLUMNS).sort_values(["dropout", "replicate"]).reset_index(drop=True)


def write_csv(table: pd.DataFrame, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)


def perplexity_figure(table: pd.DataFrame, png: str | os.PathLike, svg: str | os.PathLike, dpi: int = 150) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    for col, marker, label in (("valid_ppl", "o", "validation"), ("test_ppl", "s", "test")):
        ax.plot(table["dropout"], table[col], marker=marker, linestyle="none", label=label)
        mean = table.groupby("dropout")[col].mean()
        ax.plot(mean.index, mean.values, linestyle="-", alpha=0.5, color=ax.lines[-1].get_color())
    ax.set_xlabel("dropout")
    ax.set_ylabel("perplexity")
    ax.set_title("Perplexity vs dropout (validation and test split, pytorch/examples' evaluation)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, png, svg, dpi=dpi)
