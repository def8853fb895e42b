"""Ablation: what the model loses when a neuron is removed.

A unit j of layer l is removed by holding its hidden state h_j at one value for every reader:
column j of the layer's recurrent matrix W_hh and column j of the next layer's input matrix
W_ih (of the decoder, for the top layer) are set to zero and value x column j is added to
their biases. ``mean`` (the default) holds h_j at its mean over the tokens read: the unit's
information is gone but not its average contribution, so the change measures what the model
needs the neuron's variation for; ``zero`` holds it at 0, which in the top layer also shifts
each word's logit by a fixed amount of its own (-mean x the decoder's weight of the word on
unit j), a change of the word prior that is not about what the unit encodes. For the rest of
the model either is exactly h_j = value at every step, the initial state included (the unit's
cell state c_j feeds nothing but its own h_j, so a unit ranked by its c is removed through its
h), and the text still runs through ``nn.LSTM``'s fast path, one call per block.

For each model and text: the top-KL neurons of every layer (ranked by one state, h by
default), one at a time and all together, and as many random neurons of the same layer
(the control: seeded, never a top neuron nor a dead one), one at a time and all together. For each
ablation the text is read again and every word's log-probability compared with the
intact model's: effect_t = log p(w_t | w_<t) - log p_ablated(w_t | w_<t), in nats, so a
positive effect means the neuron helped predict that word. The mean effect over the
text is log(perplexity_ablated / perplexity_intact).

Output: an HDF5 file with every word's log-probability under the intact model and under
each ablation (schema in the README); :mod:`lstmscope.ablation_table` makes the table of it.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Sequence

import h5py
import numpy as np
import pandas as pd
import torch

from .activations import DECODER_ROWS, ieee_float32, logit_bound, next_token_log_probabilities
from .ablation_file import FORMAT, Ablation, AblationError, check_divergence_model, perplexity
from .activations_file import iter_rows, open_activations, read_words, state_dataset
from .atomic import atomic_path
from .divergence import ranked, ranking_measure, read_divergence
from .histogram import HistogramError
from .model import LSTMLanguageModel, choose_device, cpu_kernels, gpu_name, load_checkpoint
from .provenance import provenance, sha256_file, to_json

log = logging.getLogger(__name__)

#: How a unit is removed: its h held at its mean over the tokens read, or at 0.
METHODS = ("mean", "zero")

# --------------------------------------------------------------------------- the model without a unit


def ablated_model(model: LSTMLanguageModel, layer: int, neurons: Sequence[int],
                  values: Sequence[float] | None = None) -> LSTMLanguageModel:
    """A copy of ``model`` in which units ``neurons`` of ``layer`` (1-based) are removed: every reader of their h
    reads ``values`` (one per neuron, in the order given; None: 0) at every step.

    The copy owns all its tensors (a decoder tied to the embedding is untied first), so
    ``model`` is never changed.
    """
    L, N = model.config.layers, model.config.hidden_size
    if not 1 <= layer <= L:
        raise AblationError(f"layer {layer} does not exist; the model has layers 1..{L}")
    held = dict(zip((int(j) for j in neurons), [0.0] * len(neurons) if values is None else values))
    if values is not None and len(values) != len(neurons):
        raise AblationError(f"{len(values)} values for {len(neurons)} neurons of layer {layer}")
    cols = sorted(held)
    if not cols or cols[0] < 0 or cols[-1] >= N:
        raise AblationError(f"neurons {list(neurons)} of layer {layer}: must be 0..{N - 1}")
    out = copy.deepcopy(model).eval()
    with torch.no_grad():
        seen: set[int] = set()
        for name, param in list(out.named_parameters(remove_duplicate=False)):
            if id(param) in seen:  # a tensor shared by two modules (tied weights): give the second its own copy
                module_name, _, attr = name.rpartition(".")
                setattr(out.get_submodule(module_name), attr, torch.nn.Parameter(param.detach().clone()))
            seen.add(id(param))
        idx = torch.tensor(cols, device=out.decoder.weight.device)
        readers = [(getattr(out.rnn, f"weight_hh_l{layer - 1}"), getattr(out.rnn, f"bias_hh_l{layer - 1}", None)),
                   (out.decoder.weight, out.decoder.bias) if layer == L
                   else (getattr(out.rnn, f"weight_ih_l{layer}"), getattr(out.rnn, f"bias_ih_l{layer}", None))]
        value = torch.tensor([held[j] for j in cols], dtype=torch.float64, device=idx.device)
        nonzero = bool(value.any())
        for weight, bias in readers:
            if nonzero:  # what the reader read from h_j = value, at every step, moves into its bias
                if bias is None:
                    raise AblationError(f"layer {layer}: a reader of its units has no bias to hold them at a value; "
                                        "remove them with ablation.method zero (lstmscope-ablate --method zero)")
                bias += (weight[:, idx].double() @ value).to(bias.dtype)
            weight[:, idx] = 0.0
    out.rnn.flatten_parameters()
    return out


def model_without(model: LSTMLanguageModel, units: Sequence[tuple[int, int]],
                  means: dict[int, np.ndarray] | None = None) -> LSTMLanguageModel:
    """A copy of ``model`` without the ``(layer, neuron)`` units, which may lie in several layers; with ``means``
    (:func:`unit_means`) each held at its mean, else at 0."""
    by_layer: dict[int, list[int]] = {}
    for layer, neuron in units:
        by_layer.setdefault(int(layer), []).append(int(neuron))
    if not by_layer:
        raise AblationError("no neuron to remove")
    out = model
    for layer, neurons in sorted(by_layer.items()):
        out = ablated_model(out, layer, neurons, held_values(means, layer, neurons))
    return out


def held_values(means: dict[int, np.ndarray] | None, layer: int, neurons: Sequence[int]) -> list[float]:
    """What each of ``neurons`` of ``layer`` is held at: its mean (``means``, :func:`unit_means`), or 0 (None)."""
    return [0.0 if means is None else float(means[layer][j]) for j in neurons]


def unit_means(activations_path: str | os.PathLike, layers: Sequence[int], tokens: int) -> dict[int, np.ndarray]:
    """Each unit's mean h over the first ``tokens`` tokens of an activations file, per layer: {layer: (N,) float64}."""
    out = {}
    with open_activations(activations_path) as f:
        for layer in layers:
            ds = state_dataset(f, int(layer), "h")
            total = np.zeros(ds.shape[1])
            for start, block in iter_rows(ds):
                if start >= tokens:
                    break
                total += block[:tokens - start].sum(axis=0, dtype=np.float64)
            bad = np.flatnonzero(~np.isfinite(total))
            if len(bad):  # a NaN held value would make every probability NaN: a table of NaN, no error
                raise AblationError(f"{activations_path}: layer{int(layer)}/h holds non-finite values (NaN or inf) "
                                    f"among its first {tokens} tokens, in {len(bad)} unit{'s' * (len(bad) > 1)} "
                                    f"(first: neuron {int(bad[0])}): the file is damaged; dump it again")
            out[int(layer)] = total / tokens
    return out


def text_log_probabilities(model: LSTMLanguageModel, ids: np.ndarray, block_tokens: int = 1024) -> np.ndarray:
    """log p(w_t | w_<t) of every token of ``ids`` run as one stream (NaN at t = 0), as float64.

    The state is carried from block to block; memory does not grow with the text. Runs on
    the model's device.
    """
    device = next(model.parameters()).device
    model = model.eval()
    ids_t = torch.as_tensor(np.asarray(ids, dtype=np.int64)).to(device)
    T = len(ids_t)
    out = np.full(T, np.nan)
    hidden = model.init_hidden(1)
    bound = logit_bound(model.decoder)
    rows = DECODER_ROWS if device.type == "cpu" else block_tokens
    with torch.inference_mode(), ieee_float32():
        for start in range(0, T - 1, block_tokens):
            stop = min(T - 1, start + block_tokens)      # h after tokens start..stop-1 predicts start+1..stop
            features, hidden = model.features(ids_t[start:stop].unsqueeze(1), hidden)
            logp = next_token_log_probabilities(model.decoder, features, ids_t[start + 1:stop + 1], rows=rows,
                                                bound=bound)
            out[start + 1:stop + 1] = logp.double().cpu().numpy()
    return out


# --------------------------------------------------------------------------- which neurons


def check_choice(state: str, k: int, random_k: int) -> None:
    """The settings of the choice alone, before any table is read (their errors name the settings, not a file)."""
    if state not in ("h", "c"):
        raise AblationError(f"ablation.state={state!r}: choose h or c")
    if k < 0 or random_k < 0 or k + random_k == 0:
        raise AblationError(f"ablation.neurons={k}, ablation.random={random_k}: at least one neuron to remove")


def choose_ablations(table: pd.DataFrame, layers: int, hidden: int, state: str, k: int, random_k: int,
                     seed: int) -> list[Ablation]:
    """Per layer: the ``k`` top-KL live neurons of ``state`` one at a time and together, then ``random_k``
    random other neurons of the layer one at a time and together (seeded by ``seed`` and the layer; never one
    dead in h or c: removing it would change nothing and pull the control towards 0)."""
    check_choice(state, k, random_k)
    out: list[Ablation] = []
    for layer in range(1, layers + 1):
        top = ranked(table, layer, state, k)
        if len(top) < k:
            raise AblationError(f"layer {layer}/{state} has {len(top)} live (ranked) neurons; "
                                f"ablation.neurons={k} asks for more")
        top_units = [int(j) for j in top["neuron"]]
        bad = [j for j in top_units if not 0 <= j < hidden]
        if bad:
            raise AblationError(f"neurons {bad} of layer {layer} do not exist in a model of {hidden} units")
        dead = table[(table["layer"] == layer) & table["dead"].astype(bool)]["neuron"].astype(int)
        others = np.setdiff1d(np.arange(hidden), np.concatenate([top_units, dead]).astype(int))
        if random_k > len(others):
            raise AblationError(f"ablation.random={random_k}: layer {layer} has only {len(others)} live neurons "
                                f"besides its {k} top ones")
        rng = np.random.default_rng([int(seed), layer])
        random_units = sorted(int(j) for j in rng.choice(others, size=random_k, replace=False))
        out += [Ablation(layer, (j,), "top", int(r)) for j, r in zip(top_units, top["rank"])]
        if k > 1:
            out.append(Ablation(layer, tuple(top_units), "top all"))
        out += [Ablation(layer, (j,), "random") for j in random_units]
        if random_k > 1:
            out.append(Ablation(layer, tuple(random_units), "random all"))
    return out


# --------------------------------------------------------------------------- the text of a model


@dataclass
class ModelText:
    """A checkpoint's model and (a prefix of) the analysis text of one of its activations files."""

    model: LSTMLanguageModel
    checkpoint_sha256: str
    ids: np.ndarray
    words: list[str]
    stored: np.ndarray            # the file's log_expectancy (float64)
    attrs: dict
    source_provenance: str


def check_dumped_from(f: Any, checkpoint_sha: str, checkpoint_path: str | os.PathLike, what: str | os.PathLike,
                      why: str = "") -> None:
    """The open activations file ``f`` (named ``what`` in the error) must have been dumped from the checkpoint
    whose SHA-256 is ``checkpoint_sha``."""
    if str(f.attrs.get("checkpoint_sha256", "")) != checkpoint_sha:
        raise AblationError(f"{what} was dumped from another checkpoint than {checkpoint_path} "
                            f"(checkpoint_sha256 differs){why}")


def load_model_and_text(checkpoint_path: str | os.PathLike, activations_path: str | os.PathLike,
                        max_tokens: int | None = None, key: str = "ablation.max_tokens") -> ModelText:
    """The model and the text's first ``max_tokens`` tokens (all: None); the file must be this checkpoint's.
    ``key`` names the setting of ``max_tokens`` in errors."""
    if max_tokens is not None and max_tokens < 2:
        whole = "leave it out" if key.startswith("--") else "null"  # an option on the command line, else a config key
        raise AblationError(f"{key}={max_tokens}: must be at least 2 ({whole} for the whole text)")
    try:
        model, _ = load_checkpoint(checkpoint_path)
    except (FileNotFoundError, ValueError) as exc:
        raise AblationError(str(exc)) from None
    checkpoint_sha = sha256_file(checkpoint_path)
    with open_activations(activations_path) as f:
        check_dumped_from(f, checkpoint_sha, checkpoint_path, activations_path)
        n = int(f.attrs["n_tokens"]) if max_tokens is None else min(int(max_tokens), int(f.attrs["n_tokens"]))
        ids = f["tokens/ids"][:n].astype(np.int64)  # a prefix of a stream is the stream of the prefix
        check_ids_in_vocabulary(ids, int(model.config.vocab_size), activations_path, checkpoint_path)
        words = read_words(f)[:n]
        stored = f["log_expectancy"][:n].astype(np.float64)
        attrs = {k: f.attrs[k] for k in ("model", "text", "dropout", "layers", "hidden_size")}
        attrs["n_tokens"] = n
        source_prov = str(f.attrs["provenance"])
    return ModelText(model, checkpoint_sha, ids, words, stored, attrs, source_prov)


def check_ids_in_vocabulary(ids: np.ndarray, vocab_size: int, activations_path: str | os.PathLike,
                            checkpoint_path: str | os.PathLike) -> None:
    """The token ids the model reads must be rows of its embedding (0..vocab_size - 1): torch's own error,
    "index out of range in self", names neither the file nor the id."""
    if not len(ids) or (ids.min() >= 0 and ids.max() < vocab_size):
        return
    t = int(np.argmax((ids < 0) | (ids >= vocab_size)))  # the first id out of range
    raise AblationError(f"{activations_path}: tokens/ids gives token {t} id {int(ids[t])}, and its largest id is "
                        f"{int(ids.max())}, but the vocabulary of {checkpoint_path} has {vocab_size} words (ids "
                        f"0-{vocab_size - 1}): was it dumped with another vocabulary?")


def intact_log_probabilities(mt: ModelText, activations_path: str | os.PathLike,
                             checkpoint_path: str | os.PathLike, block_tokens: int = 1024) -> np.ndarray:
    """The intact model's log-probabilities of the text, which must equal the file's ``log_expectancy``."""
    intact = text_log_probabilities(mt.model, mt.ids, block_tokens)
    drift = float(np.nanmax(np.abs(intact - mt.stored))) if len(mt.ids) > 1 else 0.0
    log.info("%s: %d tokens, intact perplexity %.2f (largest difference from the dump's log-probabilities %.2g)",
             activations_path, len(mt.ids), perplexity(intact), drift)
    if drift > 1e-3:
        raise AblationError(f"{activations_path}: the intact model's log-probabilities differ from the file's "
                            f"log_expectancy by {drift:.3g}; the file does not belong to {checkpoint_path}")
    return intact


# --------------------------------------------------------------------------- the job


def run_ablation(checkpoint_path: str | os.PathLike, activations_path: str | os.PathLike,
                 divergence_path: str | os.PathLike, h5_path: str | os.PathLike, state: str = "h", neurons: int = 4,
                 random: int = 4, seed: int = 13, max_tokens: int | None = None, threads: int = 1,
                 device: str = "cpu", gpus: int = 0, block_tokens: int = 1024, method: str = "mean"
                 ) -> list[Ablation]:
    """Ablate the chosen neurons of one model on (the first ``max_tokens`` tokens of) one analysis text, each
    held at its mean h over those tokens (``method`` mean) or at 0 (zero); write the HDF5 file. Returns the
    ablations, in the file's order."""
    if method not in METHODS:
        raise AblationError(f"ablation.method={method!r}: choose one of {', '.join(METHODS)}")
    check_choice(state, neurons, random)
    kernels = cpu_kernels()
    dev = choose_device(device, gpus, "activations.device")
    torch.set_num_threads(max(1, int(threads)))
    t0 = time.monotonic()
    mt = load_model_and_text(checkpoint_path, activations_path, max_tokens)
    ids, words, attrs = mt.ids, mt.words, mt.attrs
    table = read_divergence(divergence_path)
    check_divergence_model(table, str(attrs["model"]), divergence_path, text=str(attrs["text"]))
    cfg = mt.model.config
    try:
        ablations = choose_ablations(table, cfg.layers, cfg.hidden_size, state, neurons, random, seed)
    except (AblationError, HistogramError) as exc:  # the table does not fit the model or the settings
        raise AblationError(f"{divergence_path}: {exc}") from None
    mt.model = model = mt.model.to(dev)
    intact = intact_log_probabilities(mt, activations_path, checkpoint_path, block_tokens)
    means = unit_means(activations_path, sorted({ab.layer for ab in ablations}), len(ids)) if method == "mean" else None
    log.info("%d ablations on %s, each unit held at %s", len(ablations), dev,
             "its mean h over the tokens read" if means else "0")
    width = max(len(ab.neurons) for ab in ablations)
    held = np.full((len(ablations), width), np.nan, dtype=np.float32)
    ablated = np.empty((len(ablations), len(ids)))
    for a, ab in enumerate(ablations):
        values = held_values(means, ab.layer, ab.neurons)
        held[a, :len(values)] = values
        ablated[a] = text_log_probabilities(ablated_model(model, ab.layer, ab.neurons, values), ids, block_tokens)
        log.info("%s: perplexity %.2f", ab.label, perplexity(ablated[a]))
    checkpoint_sha = mt.checkpoint_sha256
    prov = provenance(checkpoint=str(checkpoint_path), checkpoint_sha256=checkpoint_sha,
                      activations=str(activations_path), divergence=str(divergence_path),
                      divergence_sha256=sha256_file(divergence_path), rank_by=ranking_measure(table), state=state,
                      neurons=neurons, random=random, seed=seed, method=method, max_tokens=max_tokens,
                      n_tokens=len(ids),
                      device=str(dev), gpu=gpu_name(dev), cpu_kernels=kernels, format=FORMAT,
                      activations_provenance=json.loads(mt.source_provenance))
    units = np.full((len(ablations), width), -1, dtype=np.int32)
    for a, ab in enumerate(ablations):
        units[a, :len(ab.neurons)] = ab.neurons
    with atomic_path(h5_path) as tmp, h5py.File(tmp, "w") as out:
        out.attrs.update(attrs)
        out.attrs["format"] = FORMAT
        out.attrs["state"] = state
        out.attrs["method"] = method
        out.attrs["checkpoint_sha256"] = checkpoint_sha
        out.attrs["provenance"] = to_json(prov)
        out.create_dataset("tokens/ids", data=ids.astype(np.int32))
        out.create_dataset("tokens/words", data=np.array(words, dtype=object), dtype=h5py.string_dtype("utf-8"))
        out.create_dataset("log_prob/intact", data=intact.astype(np.float32))
        out.create_dataset("log_prob/ablated", data=ablated.astype(np.float32), chunks=(1, len(ids)))
        out.create_dataset("ablation/layer", data=np.array([ab.layer for ab in ablations], dtype=np.int32))
        out.create_dataset("ablation/neurons", data=units)
        out.create_dataset("ablation/held_at", data=held)
        out.create_dataset("ablation/group", data=np.array([ab.group for ab in ablations], dtype=object),
                           dtype=h5py.string_dtype("utf-8"))
    log.info("%d ablations in %.1f s -> %s", len(ablations), time.monotonic() - t0, h5_path)
    return ablations
