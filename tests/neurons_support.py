"""Test data for the activations and neuron stages: a small real model on real WikiText-2 text.

A 2-layer ``LSTMLanguageModel`` (vocabulary of the 800 most frequent words of the first
20 000 training tokens, embedding 8, hidden 12) is trained for one short epoch with the
project's trainer, saved as a real checkpoint, and its activations on 400 tokens of the
test split are dumped by the real ``dump_activations``. Everything is built once per test
session (cached by folder) and shared read-only; tests that change files copy them first.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from lstmscope.ablation import run_ablation
from lstmscope.activations import TextSpec, dump_activations
from lstmscope.divergence import neuron_divergence
from lstmscope.wikitext import heading_tokens
from lstmscope.histogram import neuron_histograms
from lstmscope.model import ModelConfig, load_checkpoint, save_checkpoint
from lstmscope.training import TrainingConfig, train
from lstmscope.vocabulary import build_vocabulary, read_tokens
from wikitext_data import split_path

TEXT = TextSpec(name="test", split="test", offset=300, tokens=400)
HIDDEN, LAYERS = 12, 2


@dataclass(frozen=True)
class TinyModel:
    folder: Path
    checkpoint: Path
    vocabulary: Path
    split: Path           # the test split of WikiText-2
    activations: Path     # float32 dump of TEXT
    dead_checkpoint: Path  # the same model with one h unit of layer 2 switched off (output gate closed)
    dead_neuron: int


_CACHE: dict[Path, TinyModel] = {}


def tiny_model(folder: Path) -> TinyModel:
    """Build (once per folder) the model, its checkpoint, the vocabulary and the float32 dump."""
    if folder in _CACHE:
        return _CACHE[folder]
    folder.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    train_tokens = read_tokens(split_path("train"))[:20000]
    valid_tokens = read_tokens(split_path("valid"))[:2000]
    vocab = build_vocabulary([train_tokens], max_size=800)
    vocab_path = folder / "vocabulary.json"
    vocab.save(vocab_path)
    mc = ModelConfig(vocab_size=len(vocab), embedding_size=8, hidden_size=HIDDEN, layers=LAYERS, dropout=0.2)
    tc = TrainingConfig(epochs=1, lr=20.0, bptt=20, batch_size=20, eval_batch_size=10, save_every_batches=10_000,
                        seed=3)
    result = train("tiny", mc, tc, torch.from_numpy(vocab.encode(train_tokens[:8000])),
                   torch.from_numpy(vocab.encode(valid_tokens)), progress=False)
    extra = {"name": "d0.2_r0", "dropout": 0.2, "seed": 3, "replicate": 0}
    checkpoint = folder / "model.pt"
    save_checkpoint(checkpoint, result.model, vocab.sha256, extra=extra)
    # A dead unit, made the way it happens: its output gate never opens, so h stays at zero.
    model = result.model
    dead = 5
    with torch.no_grad():
        n = HIDDEN
        model.rnn.bias_ih_l1[3 * n + dead] = -30.0  # gate order i, f, g, o: o of unit `dead`
    dead_checkpoint = folder / "dead.pt"
    save_checkpoint(dead_checkpoint, model, vocab.sha256, extra=extra)
    activations = folder / "activations.h5"
    dump_activations(checkpoint, vocab_path, split_path("test"), TEXT, activations, chunk_tokens=64,
                     model_info=extra)
    tm = TinyModel(folder, checkpoint, vocab_path, split_path("test"), activations, dead_checkpoint, dead)
    _CACHE[folder] = tm
    return tm


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> TinyModel:
    """The shared small model and its activations (read-only)."""
    base = tmp_path_factory.getbasetemp() / "neurons-tiny-model"
    return tiny_model(base)


def write_divergence(activations: Path, folder: Path) -> Path:
    """Histograms (c on [-3, 3]) and the divergence table of an activations file; returns the table's path."""
    neuron_histograms(activations, folder / "h.h5", folder / "r.csv", 0.01, [-3, 3], 0.01)
    neuron_divergence(folder / "h.h5", folder / "d.csv", folder / "dead.csv", 1e-10, 0.01, 0.9)
    return folder / "d.csv"


@pytest.fixture(scope="session")
def divergence_csv(tiny, tmp_path_factory) -> Path:
    """The divergence table of the shared model's activations (read-only)."""
    return write_divergence(tiny.activations, tmp_path_factory.mktemp("tiny-divergence"))


def reference_log_probs(model, ids, removed=(), held=None):
    """log p(w_t | w_<t) from the LSTM equations stepped by hand in float64, with the h of every (layer, neuron)
    in ``removed`` replaced by its value in ``held`` ({(layer, neuron): value}; 0 where absent) after every step
    and in the initial state (NaN at t = 0)."""
    sd = {k: v.double() for k, v in model.state_dict().items()}
    L, N = model.config.layers, model.config.hidden_size
    h = [torch.zeros(N, dtype=torch.float64) for _ in range(L)]
    c = [torch.zeros(N, dtype=torch.float64) for _ in range(L)]
    for layer, j in removed:
        h[layer - 1][j] = (held or {}).get((layer, j), 0.0)
    out = [np.nan]
    for t in range(len(ids) - 1):
        x = sd["encoder.weight"][ids[t]]
        for k in range(L):
            gates = (sd[f"rnn.weight_ih_l{k}"] @ x + sd[f"rnn.bias_ih_l{k}"]
                     + sd[f"rnn.weight_hh_l{k}"] @ h[k] + sd[f"rnn.bias_hh_l{k}"])
            i, f, g, o = gates.chunk(4)
            c[k] = torch.sigmoid(f) * c[k] + torch.sigmoid(i) * torch.tanh(g)
            h[k] = torch.sigmoid(o) * torch.tanh(c[k])
            off = [j for layer, j in removed if layer == k + 1]
            if off:
                h[k] = h[k].clone()
                for j in off:
                    h[k][j] = (held or {}).get((k + 1, j), 0.0)
            x = h[k]
        logits = sd["decoder.weight"] @ x + sd["decoder.bias"]
        out.append(float(torch.log_softmax(logits, 0)[ids[t + 1]]))
    return np.array(out)


def _stored_removals(h5: Path) -> list[tuple[int, str, list[int], np.ndarray]]:
    """Every ablation of an ablation file, straight from it with h5py: (layer, group, neurons removed,
    log p intact - log p ablated of each word it read; NaN at t = 0)."""
    with h5py.File(h5) as f:
        intact = f["log_prob/intact"][:].astype(np.float64)
        ablated = f["log_prob/ablated"][:].astype(np.float64)
        units, layers = f["ablation/neurons"][:], f["ablation/layer"][:]
        groups = [g.decode() for g in f["ablation/group"][:]]
    return [(int(layer), group, [int(j) for j in row if j >= 0], intact - ablated[a])
            for a, (layer, row, group) in enumerate(zip(layers, units, groups))]


def single_removal_effects(h5: Path) -> dict[tuple[int, int], np.ndarray]:
    """Every single-neuron ablation's effect on each word it read: (layer, neuron) -> effect."""
    return {(layer, neurons[0]): effect for layer, _, neurons, effect in _stored_removals(h5) if len(neurons) == 1}


def group_removal_effects(h5: Path) -> dict[tuple[int, str], tuple[list[int], np.ndarray]]:
    """Every group ablation (several neurons removed together): (layer, group) -> (its neurons, effect)."""
    return {(layer, group): (neurons, effect) for layer, group, neurons, effect in _stored_removals(h5)
            if len(neurons) > 1}


@dataclass(frozen=True)
class Degenerate:
    checkpoint: Path
    activations: Path
    divergence: Path
    constant_neuron: int  # of layer 1: h and c the same after every token


CONSTANT = 0


@pytest.fixture(scope="session")
def degenerate(tiny, tmp_path_factory) -> Degenerate:
    """The shared model changed the way units die or freeze: every output gate of layer 2 closed (all of
    its h dead; its c lives on), and unit 0 of layer 1 frozen (input gate open, forget gate shut, a constant
    cell input g = 0.5, output gate open: c = 0.5 and h = tanh(0.5) after every token)."""
    folder = tmp_path_factory.mktemp("degenerate")
    model, record = load_checkpoint(tiny.checkpoint)
    n, u = HIDDEN, CONSTANT
    with torch.no_grad():
        model.rnn.bias_ih_l1[3 * n:] = -30.0
        model.rnn.bias_hh_l1[3 * n:] = 0.0
        for gate, bias in enumerate((30.0, -30.0, float(np.arctanh(0.5)), 30.0)):  # i, f, g, o
            row = gate * n + u
            model.rnn.weight_ih_l0[row] = 0.0
            model.rnn.weight_hh_l0[row] = 0.0
            model.rnn.bias_ih_l0[row] = bias
            model.rnn.bias_hh_l0[row] = 0.0
    checkpoint = folder / "degenerate.pt"
    save_checkpoint(checkpoint, model, record["vocabulary_sha256"], extra=record["extra"])
    activations = folder / "activations.h5"
    dump_activations(checkpoint, tiny.vocabulary, tiny.split, TEXT, activations, chunk_tokens=64,
                     model_info=record["extra"])
    return Degenerate(checkpoint, activations, write_divergence(activations, folder), u)



@pytest.fixture(scope="session")
def other_run_ablation(degenerate, tmp_path_factory) -> Path:
    """An ablation file of another run's d0.2_r0 (the degenerate checkpoint, named as the shared model is): one
    top neuron by c's KL removed per layer on the first 40 tokens (layer 2's h is dead: no random control)."""
    path = tmp_path_factory.mktemp("other-run-ablation") / "other.h5"
    run_ablation(degenerate.checkpoint, degenerate.activations, degenerate.divergence, path, state="c", neurons=1,
                 random=0, max_tokens=40)
    return path

SETTLE = 20  # tokens after a heading and its blank lines that a prose passage leaves out (wikitext.HEADING_SETTLE)


def prose_avoid(words: list[str]) -> np.ndarray:
    """The tokens a prose passage leaves out, read line by line: a heading line, the empty lines next to it, and the
    first SETTLE tokens after those."""
    lines, line = [], []  # (first index, tokens) of each line, its <eos> included
    for i, w in enumerate(words):
        line.append(i)
        if w == "<eos>":
            lines.append(line)
            line = []
    if line:
        lines.append(line)
    heads = heading_tokens(words)
    out = np.zeros(len(words), dtype=bool)
    for k, line in enumerate(lines):
        if not heads[line[0]]:
            continue
        out[line] = True
        for step in (-1, 1):  # the empty lines before and after it
            j = k + step
            while 0 <= j < len(lines) and [words[i] for i in lines[j]] == ["<eos>"]:
                out[lines[j]] = True
                j += step
            if step == 1:
                after = lines[j - 1][-1] + 1 if j - 1 > k else line[-1] + 1
                out[after:after + SETTLE] = True
    return out


def prose_window(values: np.ndarray, words: list[str], length: int) -> int:
    """Where a passage of ``length`` tokens is expected with heatmap.passage prose: the largest sum of |values|
    among the windows holding the fewest tokens :func:`prose_avoid` names (none, where the text has room), first
    on ties."""
    sums = np.convolve(np.abs(np.nan_to_num(values)), np.ones(length), mode="valid")
    heads = np.convolve(prose_avoid(words).astype(int), np.ones(length, dtype=int), mode="valid")
    return int(np.argmax(np.where(heads == heads.min(), sums, -np.inf)))


def contrast(a: tuple[float, float, float], b: tuple[float, float, float]) -> float:
    """WCAG 2 contrast ratio of two sRGB colours (components 0..1)."""
    def luminance(rgb):
        lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgb]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]
    la, lb = sorted((luminance(a), luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)
