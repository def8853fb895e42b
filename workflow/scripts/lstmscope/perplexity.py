"""Perplexity of every model: a table and a figure against dropout."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Sequence

import pandas as pd

from .atomic import atomic_path
from .figures import figure_title, plt, save_figure

COLUMNS = ["model", "dropout", "replicate", "seed", "valid_ppl", "test_ppl", "epochs", "best_epoch", "training_seconds"]


def perplexity_table(metrics_paths: Sequence[str | os.PathLike],
                     test_paths: Sequence[str | os.PathLike]) -> pd.DataFrame:
    """One row per model from its metrics.json (train_lstm) and test.json (test_perplexity), given in the same order,
    sorted by dropout and replicate."""
    if len(metrics_paths) != len(test_paths):
        raise ValueError(f"{len(metrics_paths)} metrics files but {len(test_paths)} test files; one of each per model")
    rows, scored = [], set()
    for path, test_path in zip(metrics_paths, test_paths):
        m = _read(path, "metrics.json", _WANTED)
        t = _read(test_path, "test.json", _WANTED_TEST)
        training = m.get("provenance", {}).get("training", {})
        if t["model"] != m["model"]:
            raise ValueError(f"{test_path}: scores model {t['model']!r}, but {path} is model {m['model']!r}")
        trained, scored_sha = (x.get("provenance", {}).get("checkpoint_sha256") for x in (m, t))
        if trained and not scored_sha:
            raise ValueError(f"{test_path}: names no checkpoint it scored (provenance.checkpoint_sha256), so it "
                             f"cannot be matched with {path}; score it again (rule test_perplexity)")
        if trained and trained != scored_sha:
            raise ValueError(f"{test_path}: scored another checkpoint than the one {path} records "
                             "(checkpoint_sha256 differs); score it again (rule test_perplexity)")
        scored.add((training.get("valid_tokens", "?"), t.get("provenance", {}).get("test_tokens", "?")))
        rows.append({"model": m["model"], "dropout": m["dropout"], "replicate": m["replicate"], "seed": m["seed"],
                     "valid_ppl": m["valid_ppl"], "test_ppl": t["test_ppl"], "epochs": len(m["epochs"]),
                     "best_epoch": m["best_epoch"], "training_seconds": m["training_seconds"]})
    if not rows:
        raise ValueError("no metrics files given")
    table = pd.DataFrame(rows, columns=COLUMNS).sort_values(["dropout", "replicate"]).reset_index(drop=True)
    table.attrs["scored_on"] = scored_on(*scored.pop()) if len(scored) == 1 else "validation and test split"
    return table


def _read(path: str | os.PathLike, what: str, wanted: dict) -> dict:
    """A JSON record once :func:`_checked` passes it against ``wanted``; else a ValueError naming the file and what
    is wrong."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
        _checked(record, wanted)
        return record
    except MetricsError as exc:
        raise ValueError(f"{path}: not a complete {what} ({exc})") from None
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"{path}: not a complete {what} ({type(exc).__name__}: {exc})") from exc


class MetricsError(ValueError):
    """A metrics.json or test.json value of the wrong type or out of range (the message names the key)."""


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# what train_lstm writes under each key the table reads: a test, and what it says when the test fails
_WANTED = {
    "model": (lambda v: isinstance(v, str) and v.strip() != "", "a model name"),
    "dropout": (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "replicate": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0"),
    "seed": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "valid_ppl": (lambda v: _number(v) and math.isfinite(v) and v >= 1, "a finite perplexity >= 1"),
    "epochs": (lambda v: isinstance(v, list) and len(v) > 0, "a non-empty list of the epochs' records"),
    "best_epoch": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an epoch number >= 1"),
    "training_seconds": (lambda v: _number(v) and math.isfinite(v) and v >= 0, "a finite number of seconds >= 0"),
}


# what test_perplexity writes under each key the table reads
_WANTED_TEST = {"model": _WANTED["model"], "test_ppl": _WANTED["valid_ppl"]}


def _shown(value: object) -> str:
    """A value as JSON spells it, cut short (a long list or text would not make a one-line error)."""
    text = json.dumps(value, allow_nan=True)
    return text if len(text) <= 40 else f"{text[:37]}..."


def _checked(m: object, wanted: dict) -> None:
    """Every key of ``wanted`` the table reads holds what train_lstm (:data:`_WANTED`) or test_perplexity
    (:data:`_WANTED_TEST`) writes there, and the provenance is an object (its ``training`` too; a training's names
    its checkpoint); else :class:`MetricsError` naming the key."""
    if not isinstance(m, dict):
        raise MetricsError(f"a JSON {type(m).__name__}, not an object of {', '.join(wanted)}")
    for key, (fits, said) in wanted.items():
        if key not in m:
            raise KeyError(key)
        if not fits(m[key]):
            raise MetricsError(f"{key} is {_shown(m[key])}; it must be {said}")
    provenance = m.get("provenance", {})
    if not isinstance(provenance, dict):
        raise MetricsError(f"provenance is {_shown(provenance)}; it must be an object")
    training = provenance.get("training", {})
    if not isinstance(training, dict):
        raise MetricsError(f"provenance.training is {_shown(training)}; it must be an object")
    if wanted is _WANTED and not (isinstance(provenance.get("checkpoint_sha256"), str)
                                  and provenance["checkpoint_sha256"]):  # what its test.json is matched by
        raise MetricsError(f"provenance.checkpoint_sha256 is {_shown(provenance.get('checkpoint_sha256'))}; it must "
                           "name the checkpoint trained")


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
    ax.set_title(figure_title(fig, f"Perplexity vs dropout\n({table.attrs.get('scored_on', 'validation and test split')}"
                                   "; pytorch/examples' evaluation)", 10), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, png, svg, dpi=dpi)
