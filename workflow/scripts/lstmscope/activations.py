"""Activations: every layer's hidden state h and cell state c after every token of a text.

A text is run through a model as one continuous stream: the state starts at zero
before the first token and is carried to the end, with no resets; the model is
in eval mode (no dropout). The result is one HDF5 file (schema in the README):

``tokens/ids``        (T,) int32      token ids
``tokens/words``      (T,) UTF-8      the tokens as the model read them: the split's words, but ``<unk>`` for a
                                      word outside its vocabulary (``<unk>``, ``<eos>`` literal)
``tokens/split_words`` (T,) UTF-8     the split's words as they are (differ only where the vocabulary lacks one)
``layer{l}/h``        (T, N)          hidden state after token t, l = 1..L
``layer{l}/c``        (T, N)          cell state after token t
``expectancy``        (T,) float32    p(w_t | w_<t); NaN for t = 0 (no context)
``log_expectancy``    (T,) float32    natural log of ``expectancy``; NaN for t = 0

How it is computed, fast: ``nn.LSTM`` returns only the top layer's h for every
step, so each layer runs as its own single-layer ``nn.LSTM`` (weights copied) over
a block of tokens in one call. The cell states are then recovered from that
layer's input and h sequence: since h_{t-1} is known, the input, forget and cell
gates of all steps of a block come from two batched matrix products, and
c_t = f_t * c_{t-1} + i_t * g_t is an elementwise scan (all layers in one loop).
Blocks carry (h, c) to the next block, so memory does not grow with the text.

Everything runs on the model's device: on a GPU the layers, the gate products, the scan (all steps of
a block at once: ``scan_cells_parallel``) and the expectancies run there, and the next block is computed
while the caller writes the last; the writing stays on the CPU. The numbers then differ from the CPU's in
the last bits of float32.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence, TypeVar

import h5py
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .activations_file import FORMAT, STATES, ActivationsError
from .atomic import atomic_path
from .model import LSTMLanguageModel, check_vocabulary, choose_device, cpu_kernels, gpu_name, load_checkpoint
from .provenance import provenance, sha256_file, to_json
from .vocabulary import Vocabulary, read_tokens

log = logging.getLogger(__name__)

DTYPES = ("float32", "float16")


# --------------------------------------------------------------------------- text


@dataclass(frozen=True)
class TextSpec:
    """An analysis text: ``tokens`` consecutive tokens of ``split`` starting at ``offset``."""

    name: str
    split: str
    offset: int
    tokens: int


def text_tokens(split_path: str | os.PathLike, spec: TextSpec) -> list[str]:
    """The words of an analysis text; an error names the text and the split's length when it does not fit."""
    words = read_tokens(split_path)
    if spec.offset < 0 or spec.tokens < 1:
        raise ActivationsError(f"texts.{spec.name}: offset {spec.offset} and tokens {spec.tokens} must be >= 0 and >= 1")
    end = spec.offset + spec.tokens
    if end > len(words):
        raise ActivationsError(
            f"texts.{spec.name}: offset {spec.offset} + tokens {spec.tokens} = {end} is longer than split "
            f"{spec.split!r} ({split_path}: {len(words)} tokens)")
    return words[spec.offset:end]


# --------------------------------------------------------------------------- computation


def _layer_lstm(rnn: nn.LSTM, layer: int) -> nn.LSTM:
    """A single-layer ``nn.LSTM`` holding layer ``layer`` (0-based) of ``rnn``."""
    single = nn.LSTM(rnn.input_size if layer == 0 else rnn.hidden_size, rnn.hidden_size, 1)
    with torch.no_grad():
        for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
            getattr(single, f"{kind}_l0").copy_(getattr(rnn, f"{kind}_l{layer}"))
    return single.eval()


def gate_terms(x: torch.Tensor, h: torch.Tensor, h0: torch.Tensor, weight_ih: torch.Tensor,
               weight_hh: torch.Tensor, bias_ih: torch.Tensor, bias_hh: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """Forget gates f_t and updates i_t * g_t of one LSTM layer for all B steps of a block.

    ``x`` (B, I) is the layer's input and ``h`` (B, N) its output; h_{t-1} is therefore
    known and the gates of every step come from two matrix products. Gate order is
    PyTorch's: input, forget, cell (g), output.
    """
    n = weight_hh.shape[1]
    h_prev = torch.cat([h0.reshape(1, -1), h[:-1]], dim=0)
    # only the input, forget and cell gates: the output gate does not enter c
    gates = torch.addmm(bias_ih[:3 * n] + bias_hh[:3 * n], x, weight_ih[:3 * n].t())
    gates.addmm_(h_prev, weight_hh[:3 * n].t())
    i, f, g = gates.chunk(3, dim=1)
    return torch.sigmoid(f), torch.sigmoid(i).mul_(torch.tanh(g))


def scan_cells(forget: np.ndarray, update: np.ndarray, c0: np.ndarray) -> np.ndarray:
    """c_t = f_t * c_{t-1} + u_t for t = 1..B from ``c0``: an elementwise scan, two ufunc calls per step.

    Columns are independent, so the units of all layers are scanned together in one loop.
    """
    out = np.empty_like(update)
    prev = c0
    for t in range(out.shape[0]):
        np.multiply(forget[t], prev, out=out[t])
        out[t] += update[t]
        prev = out[t]
    return out


def scan_cells_parallel(forget: torch.Tensor, update: torch.Tensor, c0: torch.Tensor) -> torch.Tensor:
    """The same scan as ``scan_cells``, all B steps at once: each step is the affine map c -> f_t * c + u_t,
    and compositions of such maps are combined in log2(B) rounds (Hillis and Steele's inclusive scan):
    after round r each step holds the composition of the 2^r maps up to it. A few dozen kernels per
    block on a GPU instead of B steps; the sums are added in another order than one after another, so
    the results differ from ``scan_cells`` in the last bits of float32. Every factor is a forget gate in
    (0, 1), so no intermediate grows; a product that underflows weighs less than float32 can show.
    """
    a, b = forget.clone(), update.clone()
    s = 1
    while s < len(a):
        b_tail = torch.addcmul(b[s:], a[s:], b[:-s])   # computed before a[s:] is overwritten
        a[s:] *= a[:-s].clone()
        b[s:] = b_tail
        s *= 2
    return torch.addcmul(b, a, c0)


def target_log_probabilities(logits: torch.Tensor, targets: torch.Tensor, bounded: bool = False) -> torch.Tensor:
    """log softmax(logits)[t, targets[t]] for every row, overwriting ``logits``.

    The normaliser is the costly part (one exp per word of the vocabulary and token),
    done in place. The usual shift by the row maximum is skipped when every logit is
    known to lie within ±60 (``bounded``, or every row maximum within ±60): then no exp
    can overflow and the largest term of each sum is at least e^-60, far above float32's
    smallest number.
    """
    picked = logits.gather(1, targets.unsqueeze(1)).squeeze(1)
    if not bounded:
        row_max = logits.amax(dim=1)
        if not bool((row_max.abs() < 60).all()):
            logits.sub_(row_max.unsqueeze(1))
            picked = picked - row_max
    logits.exp_()
    log_z = torch.log(logits.sum(dim=1))
    return picked - log_z


# Rows of decoder output computed at once: a (rows, V) block of logits that stays in the CPU's
# cache through the matrix product, the exp and the sum (the whole (B, V) block would not).
DECODER_ROWS = 256


def logit_bound(decoder: nn.Linear) -> float:
    """The largest |logit| the decoder can give for any h in [-1, 1]^N: max over words of
    the sum of |weights| plus |bias|."""
    return float((decoder.weight.detach().abs().sum(dim=1) + decoder.bias.detach().abs()).max())


def next_token_log_probabilities(decoder: nn.Linear, h: torch.Tensor, targets: torch.Tensor,
                                 rows: int = DECODER_ROWS, bound: float | None = None) -> torch.Tensor:
    """log p(targets[t] | h[t]) = log softmax(decoder(h[t]))[targets[t]] for every row of ``h``.

    The logits are computed ``rows`` rows at a time into one reused buffer, so the (T, V)
    matrix of logits never exists. If ``bound`` (``logit_bound(decoder)``, computed when not
    given) is below 60 and h lies in [-1, 1], no row maximum is needed. Runs on the device of
    ``decoder`` and ``h``.
    """
    weight, bias = decoder.weight.detach(), decoder.bias.detach()
    bound = logit_bound(decoder) if bound is None else bound
    bounded = bound < 60 and bool((h.abs() <= 1).all())
    T = len(targets)
    out = torch.empty(T, device=h.device)
    buf = torch.empty(min(rows, max(T, 1)), weight.shape[0], device=h.device)
    wt = weight.t()
    for start in range(0, T, rows):
        stop = min(T, start + rows)
        logits = buf[:stop - start]
        torch.addmm(bias, h[start:stop], wt, out=logits)
        out[start:stop] = target_log_probabilities(logits, targets[start:stop], bounded)
    return out


@contextlib.contextmanager
def ieee_float32() -> Iterator[None]:
    """cuDNN runs recurrent layers in TF32 on recent GPUs unless told otherwise (products with a
    10-bit mantissa); a dump stores float32, so inside this block they run in full float32."""
    rnn = getattr(torch.backends.cudnn, "rnn", None)
    if rnn is not None and hasattr(rnn, "fp32_precision"):
        old = rnn.fp32_precision
        rnn.fp32_precision = "ieee"
        try:
            yield
        finally:
            rnn.fp32_precision = old
    else:  # torch before the fp32_precision settings
        old = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32 = old


@dataclass
class Block:
    """The activations of tokens [start, start + len) of a text."""

    start: int
    h: list[np.ndarray]          # per layer, (B, N) float32
    c: list[np.ndarray]          # per layer, (B, N) float32
    log_expectancy: np.ndarray   # (B,) float32: log p(w_{t+1} | w_<=t) for t in the block (NaN past the text)


def iterate_activations(model: LSTMLanguageModel, ids: np.ndarray, block_tokens: int,
                        gpu_way: bool | None = None) -> Iterator[Block]:
    """Run ``ids`` through ``model`` as one stream, on the model's device, yielding blocks of activations.

    ``Block.log_expectancy[j]`` is the log-probability the model gives, after token
    ``start + j``, to the next token of the text (NaN after the last token).

    Each block is computed layer after layer. On the CPU its cell states come from ``scan_cells``,
    one step after another, and it is handed out when done. The GPU's way (``gpu_way``, by default
    where the model is on a CUDA GPU) keeps the GPU busy: ``scan_cells_parallel`` scans all steps of
    a block at once, on the GPU; each block is copied to pinned host memory without waiting; and the
    next block is under way before one is handed out. The arithmetic is the same either way; only
    the order of the scan's additions differs. ``gpu_way`` on the CPU runs the same schedule.
    """
    if block_tokens < 1:
        raise ActivationsError(f"block_tokens={block_tokens}: must be >= 1")
    device = next(model.parameters()).device
    on_gpu = device.type == "cuda"
    gpu_way = on_gpu if gpu_way is None else gpu_way
    # the CPU computes the logits in cache-sized blocks of rows; a GPU takes a whole block at once
    decoder_rows = DECODER_ROWS if device.type == "cpu" else block_tokens
    model = model.eval()
    rnn = model.rnn
    L = rnn.num_layers
    layers = [_layer_lstm(rnn, k).to(device) for k in range(L)]
    weights = [(getattr(rnn, f"weight_ih_l{k}").detach(), getattr(rnn, f"weight_hh_l{k}").detach(),
                getattr(rnn, f"bias_ih_l{k}").detach(), getattr(rnn, f"bias_hh_l{k}").detach())
               for k in range(L)]
    n = rnn.hidden_size
    bound = logit_bound(model.decoder)  # once per model, not per block
    state = [(torch.zeros(1, 1, n, device=device), torch.zeros(1, 1, n, device=device)) for _ in layers]
    ids_t = torch.as_tensor(np.asarray(ids, dtype=np.int64)).to(device)
    total = len(ids_t)

    def compute(start: int) -> tuple[int, list[torch.Tensor], Any]:
        """Block [start, start + block_tokens): h of each layer, c of all layers side by side, log p."""
        stop = min(total, start + block_tokens)
        x = model.encoder(ids_t[start:stop])                          # (B, E); eval: no dropout
        hs, fs, us, c0s = [], [], [], []
        for k, lstm in enumerate(layers):
            h0, c0 = state[k]
            out, (hn, cn) = lstm(x.unsqueeze(1), (h0, c0))            # the fast path: one call per layer
            h = out[:, 0, :]
            f, u = gate_terms(x, h, h0, *weights[k])
            hs.append(h)
            fs.append(f)
            us.append(u)
            c0s.append(c0.reshape(-1))
            state[k] = (hn, cn)
            x = h
        if gpu_way:
            c_all = scan_cells_parallel(torch.cat(fs, 1), torch.cat(us, 1), torch.cat(c0s))
        else:
            c_all = torch.from_numpy(scan_cells(torch.cat(fs, 1).cpu().numpy(), torch.cat(us, 1).cpu().numpy(),
                                                torch.cat(c0s).cpu().numpy()))
        nxt = ids_t[start + 1:stop + 1]                               # predicted from h of start..stop-1
        logp = torch.full((stop - start,), math.nan, device=device)
        m = len(nxt)
        if m:
            logp[:m] = next_token_log_probabilities(model.decoder, x[:m], nxt, rows=decoder_rows, bound=bound)
        tensors = hs + [c_all, logp]
        if not on_gpu:
            return start, tensors, None
        host = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in tensors]
        for dst, src in zip(host, tensors):
            dst.copy_(src, non_blocking=True)
        copied = torch.cuda.Event(blocking=True)  # waited for without keeping a CPU core busy
        copied.record(torch.cuda.current_stream(device))  # the stream the copies went on (the tensors' device's)
        return start, host, copied

    def block(computed: tuple[int, list[torch.Tensor], Any]) -> Block:
        start, tensors, copied = computed
        if copied is not None:
            copied.synchronize()                                      # this block's copies, not the next's
        arrays = [t.numpy() for t in tensors]
        return Block(start, arrays[:L], np.split(arrays[L], L, axis=1), arrays[-1])

    with torch.inference_mode(), ieee_float32(), torch.cuda.device(device) if on_gpu else contextlib.nullcontext():
        waiting = None
        for start in range(0, total, block_tokens):
            computed = compute(start)
            if not gpu_way:
                yield block(computed)
                continue
            if waiting is not None:
                yield block(waiting)                                  # while the next block is under way
            waiting = computed
        if waiting is not None:
            yield block(waiting)


# --------------------------------------------------------------------------- writing

Item = TypeVar("Item")


def in_background(items: Iterator[Item], depth: int = 2, name: str = "activations") -> Iterator[Item]:
    """The items of ``items``, taken from a thread that runs up to ``depth`` items ahead.

    A GPU dump computes in this thread while the caller writes the last block (torch and cuDNN release
    Python's lock while they launch and wait). An error in the thread is raised here. Once this iterator
    is closed (as ``write_activations`` does however it ends: an error, Ctrl-C, SIGTERM), the thread
    stops after the item it is computing and closes ``items`` itself. In flight at once: the item the
    caller holds, ``depth`` waiting, one being handed over and the ones ``items`` computes ahead (a GPU
    dump: about six blocks of pinned host memory, 33 MB each at the thesis's size).
    """
    items = iter(items)
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def put(entry: tuple[Any, BaseException | None]) -> bool:
        while not stop.is_set():
            try:
                ready.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            while not stop.is_set():  # checked before each item is computed
                try:
                    item = next(items)
                except StopIteration:
                    put((end, None))
                    return
                if not put((item, None)):
                    return
        except BaseException as exc:  # handed to the caller, raised there
            put((end, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item, exc = ready.get()
            if exc is not None:
                raise exc
            if item is end:
                return
            yield item
    finally:
        stop.set()
        try:
            thread.join()  # it stops after the item it is computing
        except BaseException:  # a second Ctrl-C or SIGTERM while waiting: give it a little longer, then go
            thread.join(timeout=30)
            raise


def write_activations(model: LSTMLanguageModel, ids: np.ndarray, words: Sequence[str], output_path: str | os.PathLike,
                      dtype: str = "float32", chunk_tokens: int = 1024, attrs: dict[str, Any] | None = None,
                      progress: bool = True, split_words: Sequence[str] | None = None,
                      background: bool | None = None) -> np.ndarray:
    """Run ``ids`` through ``model`` (on its device) and write the activations file (atomically); returns
    log_expectancy. ``words`` are the tokens as the model reads them, ``split_words`` (default: the same)
    the text's own words. ``background`` (default: where the model is on a GPU): compute in a thread
    (``in_background``) while this one writes."""
    T, N, L = len(ids), model.config.hidden_size, model.config.layers
    rows = max(1, min(chunk_tokens, T))
    strings = h5py.string_dtype("utf-8")
    with atomic_path(output_path) as tmp, h5py.File(tmp, "w") as f:
        f.create_dataset("tokens/ids", data=np.asarray(ids, dtype=np.int32))
        f.create_dataset("tokens/words", data=np.array(list(words), dtype=object), dtype=strings)
        f.create_dataset("tokens/split_words", data=np.array(list(words if split_words is None else split_words),
                                                             dtype=object), dtype=strings)
        states = {}
        for layer in range(1, L + 1):
            for s in STATES:
                states[layer, s] = f.create_dataset(f"layer{layer}/{s}", shape=(T, N), dtype=dtype, chunks=(rows, N))
        logexp = np.full(T, np.nan, dtype=np.float32)
        blocks = iterate_activations(model, ids, rows)
        if background is None:
            background = next(model.parameters()).device.type == "cuda"
        if background:
            blocks = in_background(blocks)  # the GPU computes the next blocks while this thread writes
        # closed however the loop ends (tqdm does not close what it wraps): a thread computing ahead stops at once
        with contextlib.closing(blocks), tqdm(blocks, total=math.ceil(T / rows), desc="blocks", mininterval=5,
                                              disable=not progress) as bar:
            for block in bar:
                b = len(block.log_expectancy)
                for k in range(L):
                    states[k + 1, "h"][block.start:block.start + b] = block.h[k]
                    states[k + 1, "c"][block.start:block.start + b] = block.c[k]
                m = min(b, T - block.start - 1)  # log p of token t + 1 is computed after token t
                logexp[block.start + 1:block.start + 1 + m] = block.log_expectancy[:m]
        f.create_dataset("log_expectancy", data=logexp)
        f.create_dataset("expectancy", data=np.exp(logexp))
        f.attrs.update(attrs or {})
    return logexp


def dump_activations(checkpoint_path: str | os.PathLike, vocabulary_path: str | os.PathLike,
                     split_path: str | os.PathLike, text: TextSpec, output_path: str | os.PathLike,
                     dtype: str = "float32", chunk_tokens: int = 1024, threads: int = 1,
                     model_info: dict[str, Any] | None = None, device: str = "cpu", gpus: int = 0,
                     progress: bool = True) -> dict[str, Any]:
    """Write the activations file of one model and one analysis text; return a summary. ``progress``: a progress
    bar on stderr (the job's log).

    ``device``: ``cpu``, ``cuda`` or ``auto`` (CUDA when the job was given ``gpus`` and one is present).
    """
    kernels = cpu_kernels()
    dev = choose_device(device, gpus, "activations.device")
    if dtype not in DTYPES:
        raise ActivationsError(f"activations.dtype={dtype!r}: choose one of {', '.join(DTYPES)}")
    if chunk_tokens < 1:
        raise ActivationsError(f"activations.chunk_tokens={chunk_tokens}: must be >= 1")
    torch.set_num_threads(max(1, int(threads)))
    t0 = time.monotonic()
    model, record = load_checkpoint(checkpoint_path)
    vocab = Vocabulary.load(vocabulary_path)
    check_vocabulary(checkpoint_path, record, vocab.sha256, vocabulary_path, ActivationsError)
    split_words = text_tokens(split_path, text)
    try:
        ids = vocab.encode(split_words)
    except KeyError as exc:  # a vocabulary without <unk> (vocabulary.max_size: null on a corpus that lacks it)
        raise ActivationsError(f"{split_path}: {exc.args[0]} ({vocabulary_path})") from None
    words = vocab.decode(ids)  # what the model reads: <unk> for a word outside its vocabulary
    unknown = sum(a != b for a, b in zip(words, split_words))
    cfg = model.config
    extra = dict(record.get("extra", {}))
    extra.update(model_info or {})
    T, N, L = len(ids), cfg.hidden_size, cfg.layers
    rows = min(chunk_tokens, T)
    log.info("%s: %d tokens of %s (offset %d; %d words outside the vocabulary, read as <unk>), %d layers x %d "
             "units, %s, chunks of %d rows, on %s", output_path, T, text.split, text.offset, unknown, L, N, dtype,
             rows, dev)
    checkpoint_sha = sha256_file(checkpoint_path)
    prov = provenance(model_config=dict(record["model_config"]), model=extra.get("name"),
                      dropout=extra.get("dropout"), seed=extra.get("seed"), replicate=extra.get("replicate"),
                      checkpoint=str(checkpoint_path), checkpoint_sha256=checkpoint_sha,
                      vocabulary_sha256=vocab.sha256, text=text.name, split=text.split, offset=text.offset,
                      data_sha256={text.split: sha256_file(split_path)},  # the file the text was cut from
                      n_tokens=T, dtype=dtype, chunk_tokens=rows, format=FORMAT, device=str(dev), gpu=gpu_name(dev),
                      cpu_kernels=kernels,
                      expectancy="p(w_t | w_<t); NaN at t = 0 (no context)")
    attrs = {
        "format": FORMAT,
        "provenance": to_json(prov),
        "model": str(extra.get("name", "")),
        "dropout": float(extra.get("dropout", cfg.dropout)),
        "seed": int(extra.get("seed", -1)),
        "checkpoint_sha256": checkpoint_sha,
        "vocabulary_sha256": vocab.sha256,
        "text": text.name,
        "split": text.split,
        "offset": int(text.offset),
        "n_tokens": int(T),
        "unknown_words": int(unknown),  # words of the split outside the vocabulary (tokens/words: <unk>)
        "layers": int(L),
        "hidden_size": int(N),
        "dtype": dtype,
    }
    logexp = write_activations(model.to(dev), ids, words, output_path, dtype=dtype, chunk_tokens=rows,
                               attrs=attrs, split_words=split_words, progress=progress)
    seconds = time.monotonic() - t0
    finite = logexp[np.isfinite(logexp)]
    summary = {"tokens": T, "layers": L, "hidden_size": N, "seconds": seconds,
               "tokens_per_s": T / seconds if seconds > 0 else math.inf,
               "perplexity": float(np.exp(-finite.mean())) if len(finite) else math.nan}
    log.info("%s: %d tokens in %.2f s (%.0f tokens/s); perplexity of the text %.1f", output_path, T, seconds,
             summary["tokens_per_s"], summary["perplexity"])
    return summary
