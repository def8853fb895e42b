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
    rows, scored = [], set()
    for path in metrics_paths:
        try:
            m = json.loads(open(path, encoding="utf-8").read())
            training = m.get("provenance", {}).get("training", {})
            scored.add((training.get("valid_tokens", "?"), training.get("test_tokens", "?")))
            rows.append({"model": m["model"], "dropout": m["dropout"], "replicate": m["replicate"], "seed": m["seed"],
                         "valid_ppl": m["valid_ppl"], "test_ppl": m["test_ppl"], "epochs": len(m["epochs"]),
                         "best_epoch": m["best_epoch"], "training_seconds": m["training_seconds"]})
        except (OSError, ValueError, KeyError) as exc:
            raise ValueError(f"{path}: not a complete metrics.json ({type(exc).__name__}: {exc})") from exc
    if not rows:
        raise ValueError("no metrics files given")
    table = pd.DataFrame(rows, columns=COLUMNS).sort_values(["dropout", "replicate"]).reset_index(drop=True)
    table.attrs["scored_on"] = scored_on(*scored.pop()) if len(scored) == 1 else "validation and test split"
    return table


def scored_on(valid_tokens: int | None | str, test_tokens: int | None | str) -> str:
    """What the perplexities were computed on, from ``training.valid_tokens`` and ``.test_tokens`` (None: the whole
    split; anything else, as "?" for a metrics file that does not record them: said without numbers)."""
    if not all(n is None or isinstance(n, int) for n in (valid_tokens, test_tokens)):
        return "validation and test split"

    def part(n: int | None, split: str) -> str:
        return f"the whole {split} split" if n is None else f"the first {n:,} {split} tokens".replace(",", " ")

    if valid_tokens == test_tokens:
        return ("the whole validation and test splits" if valid_tokens is None
                else f"the first {valid_tokens:,} validation and test tokens".replace(",", " "))
    return f"{part(valid_tokens, 'validation')} and {part(test_tokens, 'test')}"


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
    ax.set_title(f"Perplexity vs dropout\n({table.attrs.get('scored_on', 'validation and test split')}; "
                 "pytorch/examples' evaluation)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, png, svg, dpi=dpi)
