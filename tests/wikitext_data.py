"""Where the tests find WikiText-2's three splits: ``$LSTMSCOPE_WIKITEXT`` when set; else the first of
``../shared/data/wikitext-2`` (beside the project) and ``results/data/wikitext-2`` (the default pipeline's own
checksummed download) that holds all three. Without them a test that needs the text is skipped, and fails
under ``CI=true``."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SPLITS = ("train", "valid", "test")
CANDIDATES = (REPO.parent / "shared" / "data" / "wikitext-2", REPO / "results" / "data" / "wikitext-2")


def complete(folder: Path) -> bool:
    return all((folder / f"{s}.txt").is_file() for s in SPLITS)


def _find() -> Path:
    given = os.environ.get("LSTMSCOPE_WIKITEXT")
    if given:
        return Path(given)
    return next((c for c in CANDIDATES if complete(c)), CANDIDATES[0])


WIKITEXT = _find()


def missing() -> str:
    """Why the tests that read WikiText-2 cannot run, and what to do."""
    where = (f"at {WIKITEXT} ($LSTMSCOPE_WIKITEXT)" if os.environ.get("LSTMSCOPE_WIKITEXT")
             else f"at {' or '.join(str(c) for c in CANDIDATES)}")
    return (f"WikiText-2 (train.txt, valid.txt, test.txt) not found {where}: run the default pipeline first "
            "(it downloads them to results/data/wikitext-2) or set LSTMSCOPE_WIKITEXT to a folder holding them")


def split_path(split: str) -> Path:
    """The path of one split; the test is skipped (failed under CI=true) when WikiText-2 is not there."""
    path = WIKITEXT / f"{split}.txt"
    if not path.is_file():
        if os.environ.get("CI") == "true":
            raise FileNotFoundError(missing())
        pytest.skip(missing())
    return path
