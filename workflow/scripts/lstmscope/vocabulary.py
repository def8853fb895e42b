"""Tokenisation and vocabulary, exactly as pytorch/examples word_language_model.

Every line is split on whitespace and ends with ``<eos>``; the vocabulary holds
the words of all three splits in order of first appearance (33 278 on
WikiText-2). With ``max_size`` only the most frequent words are kept and every
other word becomes ``<unk>``.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .atomic import write_text

EOS = "<eos>"
UNK = "<unk>"
SPLITS = ("train", "valid", "test")


def tokenize_lines(lines: Iterable[str]) -> Iterator[str]:
    """Yield the tokens of ``lines``: whitespace split, ``<eos>`` after every line."""
    for line in lines:
        yield from line.split()
        yield EOS


def read_tokens(path: str | os.PathLike) -> list[str]:
    """All tokens of a text file, tokenised as pytorch/examples does."""
    with open(path, encoding="utf-8") as fh:
        return list(tokenize_lines(fh))


def first_tokens(path: str | os.PathLike, tokens: int | None) -> list[str]:
    """The first ``tokens`` tokens of a split (all when None): what training reads, and what a vocabulary of
    ``max_size`` words is counted on. More than the split holds is an error naming it."""
    words = read_tokens(path)
    if tokens is not None:
        if tokens > len(words):
            raise ValueError(f"{path}: asked for {tokens} tokens but the split has only {len(words)}")
        words = words[:tokens]
    return words


@dataclass
class Vocabulary:
    """An ordered list of words; a word's index is its id."""

    words: list[str]
    index: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.index = {w: i for i, w in enumerate(self.words)}
        if len(self.index) != len(self.words):
            raise ValueError("vocabulary has duplicate words")

    def __len__(self) -> int:
        return len(self.words)

    @property
    def sha256(self) -> str:
        """Digest of the word list; checkpoints record it so stages cannot mix vocabularies."""
        return hashlib.sha256("\n".join(self.words).encode("utf-8")).hexdigest()

    def encode(self, tokens: Sequence[str]) -> np.ndarray:
        """Token ids (int64); words outside the vocabulary map to ``<unk>``."""
        unk = self.index.get(UNK)
        ids = np.empty(len(tokens), dtype=np.int64)
        for i, tok in enumerate(tokens):
            j = self.index.get(tok, unk)
            if j is None:
                raise KeyError(f"word {tok!r} is not in the vocabulary and the vocabulary has no {UNK}")
            ids[i] = j
        return ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        return [self.words[int(i)] for i in ids]

    def save(self, path: str | os.PathLike, **metadata: object) -> None:
        record = {"sha256": self.sha256, "size": len(self), "words": self.words, **metadata}
        write_text(path, json.dumps(record, ensure_ascii=False))

    @classmethod
    def load(cls, path: str | os.PathLike) -> "Vocabulary":
        try:
            record = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a lstmscope vocabulary file ({exc})") from exc
        words = record.get("words") if isinstance(record, dict) else None
        if not isinstance(words, list) or not all(isinstance(w, str) for w in words):
            raise ValueError(f"{path}: not a lstmscope vocabulary file (no list of words under \"words\")")
        try:
            vocab = cls(words)
        except ValueError as exc:
            raise ValueError(f"{path}: not a lstmscope vocabulary file ({exc})") from exc
        if record.get("sha256") != vocab.sha256:
            raise ValueError(f"{path}: vocabulary digest does not match its words (file corrupt?)")
        return vocab


def build_vocabulary(token_lists: Iterable[Sequence[str]], max_size: int | None = None) -> Vocabulary:
    """The vocabulary of the given token streams.

    Without ``max_size``: every word, in order of first appearance (pytorch/examples).
    With ``max_size``: the ``max_size`` most frequent words (ties broken by first
    appearance), always including ``<eos>`` and ``<unk>``, in order of first appearance (either of
    them absent from the tokens comes after every word, ``<eos>`` before ``<unk>``).
    """
    first_seen: dict[str, int] = {}
    counts: Counter[str] = Counter()
    for tokens in token_lists:
        counts.update(tokens)
        for tok in tokens:
            if tok not in first_seen:
                first_seen[tok] = len(first_seen)
    words = list(first_seen)
    if max_size is None:
        return Vocabulary(words)
    if max_size < 2:
        raise ValueError(f"vocabulary.max_size={max_size}: must be at least 2 (<eos> and <unk>)")
    ranked = sorted(words, key=lambda w: (-counts[w], first_seen[w]))
    keep = {EOS, UNK}
    for w in ranked:
        if len(keep) >= max_size:
            break
        keep.add(w)
    for special in (EOS, UNK):
        first_seen.setdefault(special, len(first_seen))
    return Vocabulary(sorted(keep, key=first_seen.__getitem__))


def vocabulary_from_files(paths: Sequence[str | os.PathLike], max_size: int | None = None,
                          train_tokens: int | None = None) -> Vocabulary:
    """The vocabulary of a corpus whose splits are ``paths``, the training split first.

    Without ``max_size``: every word of every split, as pytorch/examples. With ``max_size``: the most frequent
    words of the tokens the models train on (the first ``train_tokens`` of the training split; None: all of
    it), so that no word is chosen by its count in the validation or test split, and none that training never
    shows the model is kept."""
    if max_size is None:
        return build_vocabulary((read_tokens(p) for p in paths))
    return build_vocabulary([first_tokens(paths[0], train_tokens)], max_size=max_size)
