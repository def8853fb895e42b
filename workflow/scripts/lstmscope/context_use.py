"""How much of the text before a word a model uses (Khandelwal, He, Qi & Jurafsky 2018, *Sharp Nearby, Fuzzy Far
Away: How Neural Language Models Use Context*), measured on an analysis text's dump.

At ``positions`` words t of the text, drawn at random (seeded) among those with at least ``max(lengths)`` words
before them, the model predicts w_t again from a context cut short:

- ``truncated``, length k: the model reads only w_{t-k} .. w_{t-1}, from the zero state (as it starts the text);
- ``shuffled``, length k < L = max(lengths): it reads the L words before t, the nearest k in their order and the
  L - k before them shuffled (a permutation of their own, per position): whether the order of the far words matters
  or only which words they are.

Each loss -log p(w_t | context) is compared with the loss the model has when it has read the whole text before t as
one stream: the dump's ``log_expectancy`` (the same model and positions, so the difference is paired). Per variant,
length and class of the predicted word (``all`` and each class of :func:`.word_classes.word_class` present): the
mean loss, the stream's mean loss on the same positions, their difference ``increase`` and its standard error.
What length counts as enough (a share of the stream's loss) is the summary's (:mod:`.context_use_summary`), so
that setting reads no text again.
"""
from __future__ import annotations

import logging
import os
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from .ablation import load_model_and_text
from .ablation_file import AblationError
from .activations import DECODER_ROWS, ieee_float32, logit_bound, next_token_log_probabilities
from .activations_file import open_activations, read_expectancy
from .atomic import write_table
from .context_use_table import COLUMNS
from .model import LSTMLanguageModel, choose_device, cpu_kernels, gpu_name
from .word_classes import WORD_CLASSES, word_class

log = logging.getLogger(__name__)

BATCH = {"cpu": 512, "cuda": 4096}  # windows read side by side, by device type
TIME_BLOCK = 64    # steps run at once (the LSTM's output of the steps before is dropped: memory does not grow with k)


class ContextUseError(ValueError):
    """Bad settings or a text too short for them."""


def check_settings(lengths: Sequence[int], positions: int) -> list[int]:
    """The context lengths, sorted; errors name the setting."""
    lengths = [int(k) for k in lengths]
    if not lengths:
        raise ContextUseError("context_use.lengths is empty: give at least one context length")
    if min(lengths) < 1:
        raise ContextUseError(f"context_use.lengths holds {min(lengths)}: a context is at least 1 word")
    if len(set(lengths)) != len(lengths):
        raise ContextUseError(f"context_use.lengths {lengths} names a length twice")
    if int(positions) < 2:
        raise ContextUseError(f"context_use.positions={positions}: at least 2 words (a standard error needs two)")
    return sorted(lengths)


def choose_positions(n_tokens: int, longest: int, positions: int, seed: int, what: str = "the text"
                     ) -> np.ndarray:
    """``positions`` word positions (all there are, where fewer), drawn without replacement among those with
    ``longest`` words before them, in text order."""
    available = n_tokens - longest
    if available < 2:
        raise ContextUseError(f"{what} holds {n_tokens} tokens: too few for a context of {longest} words "
                              f"(context_use.lengths) and two words to predict after it")
    rng = np.random.default_rng([int(seed), 0])
    chosen = rng.choice(available, size=min(int(positions), available), replace=False)
    return np.sort(chosen + longest)


def window_log_probabilities(model: LSTMLanguageModel, windows: np.ndarray, targets: np.ndarray,
                             batch: int | None = None, time_block: int = TIME_BLOCK) -> np.ndarray:
    """log p(targets[b] | windows[b]) for each row b of ``windows`` (B, k) of token ids, each read from the zero
    state as a text of its own; float64. Runs on the model's device, ``batch`` rows at a time (None: the device's
    :data:`BATCH`)."""
    device = next(model.parameters()).device
    batch = int(batch or BATCH.get(device.type, BATCH["cpu"]))
    rows = DECODER_ROWS if device.type == "cpu" else batch  # the decoder's logits: a block of rows at a time
    model = model.eval()
    bound = logit_bound(model.decoder)
    out = np.empty(len(targets))
    with torch.inference_mode(), ieee_float32():
        for start in range(0, len(targets), batch):
            stop = min(len(targets), start + batch)
            tokens = torch.as_tensor(np.ascontiguousarray(windows[start:stop].T), dtype=torch.int64, device=device)
            hidden = model.init_hidden(stop - start)
            for s in range(0, tokens.shape[0], time_block):
                _, hidden = model.rnn(model.encoder(tokens[s:s + time_block]), hidden)
            target = torch.as_tensor(targets[start:stop], dtype=torch.int64, device=device)
            logp = next_token_log_probabilities(model.decoder, hidden[0][-1], target, rows=rows, bound=bound)
            out[start:stop] = logp.double().cpu().numpy()
    return out


def truncated_windows(ids: np.ndarray, positions: np.ndarray, length: int) -> np.ndarray:
    """The ``length`` words before each position, (B, length)."""
    return ids[positions[:, None] + np.arange(-length, 0)[None, :]]


def shuffled_windows(ids: np.ndarray, positions: np.ndarray, longest: int, keep: int,
                     rng: np.random.Generator) -> np.ndarray:
    """The ``longest`` words before each position, the nearest ``keep`` in order, the others in a random order of
    their own per position, (B, longest)."""
    windows = truncated_windows(ids, positions, longest).copy()
    far = longest - keep
    windows[:, :far] = rng.permuted(windows[:, :far], axis=1)
    return windows


def context_losses(model: LSTMLanguageModel, ids: np.ndarray, positions: np.ndarray, lengths: Sequence[int],
                   seed: int, batch: int | None = None) -> dict[tuple[str, int], np.ndarray]:
    """-log p of the word at each of ``positions`` after each context: (``truncated``, k) for every length k, then
    (``shuffled``, k) for every length but the longest, their shuffles drawn from the seed (``seed``, 1) one length
    after another, shortest first."""
    lengths = sorted(lengths)
    longest, targets = lengths[-1], ids[positions]
    losses = {("truncated", k): -window_log_probabilities(model, truncated_windows(ids, positions, k), targets, batch)
              for k in lengths}
    rng = np.random.default_rng([int(seed), 1])
    for k in lengths[:-1]:
        windows = shuffled_windows(ids, positions, longest, k, rng)
        losses["shuffled", k] = -window_log_probabilities(model, windows, targets, batch)
    return losses


def _rows(losses: np.ndarray, stream: np.ndarray, classes: np.ndarray, variant: str, length: int) -> list[dict]:
    rows = []
    for words in ("all", *WORD_CLASSES):
        mask = np.ones(len(classes), bool) if words == "all" else classes == words
        n = int(mask.sum())
        if n == 0:
            continue
        diff = losses[mask] - stream[mask]
        rows.append({"words": words, "variant": variant, "length": length, "positions": n,
                     "loss": float(losses[mask].mean()), "stream_loss": float(stream[mask].mean()),
                     "increase": float(diff.mean()),
                     "increase_se": float(diff.std(ddof=1) / np.sqrt(n)) if n > 1 else np.nan})
    return rows


def context_use(checkpoint_path: str | os.PathLike, activations_path: str | os.PathLike,
                csv_path: str | os.PathLike, lengths: Sequence[int], positions: int, seed: int,
                device: str = "cpu", gpus: int = 0, threads: int = 1, batch: int | None = None) -> pd.DataFrame:
    """The table of one model and text (see the module's docstring), written to ``csv_path``; what computed it
    (``device``, ``gpu``, ``cpu_kernels``) in the table's ``attrs``, for its provenance record."""
    lengths = check_settings(lengths, positions)
    longest = lengths[-1]
    kernels = cpu_kernels()
    dev = choose_device(device, gpus, "activations.device")
    torch.set_num_threads(max(1, int(threads)))
    try:
        mt = load_model_and_text(checkpoint_path, activations_path)
    except AblationError as exc:
        raise ContextUseError(str(exc)) from None
    model = mt.model.to(dev).eval()
    chosen = choose_positions(len(mt.ids), longest, positions, seed, str(activations_path))
    with open_activations(activations_path) as f:  # the file's own check of a value no log-probability has
        stream = -read_expectancy(f, log=True)[chosen]
    classes = np.array([word_class(mt.words[t]) for t in chosen])
    log.info("%s: %d of its %d tokens predicted, each after contexts of %s words (%s, kernels %s)",
             activations_path, len(chosen), len(mt.ids), ", ".join(map(str, lengths)), dev, kernels)
    rows = []
    for (variant, k), losses in context_losses(model, mt.ids, chosen, lengths, seed, batch).items():
        rows += _rows(losses, stream, classes, variant, k)
        log.info("%s: loss %.4f, the stream's %.4f", (f"truncated to {k} words" if variant == "truncated" else
                 f"{longest} words, all but the last {k} shuffled"), losses.mean(), stream.mean())
    table = pd.DataFrame(rows)
    table.insert(0, "dropout", float(mt.attrs["dropout"]))
    table.insert(0, "text", str(mt.attrs["text"]))
    table.insert(0, "model", str(mt.attrs["model"]))
    table.insert(table.columns.get_loc("positions"), "longest", longest)
    table = table[COLUMNS]
    write_table(table, csv_path, "%.6g")
    table.attrs.update(device=str(dev), gpu=gpu_name(dev), cpu_kernels=kernels)
    return table
