"""dump_activations on a small real model and real WikiText-2 text: correctness, schema, bad input."""
from __future__ import annotations

import hashlib
import json
import re
import shutil

import h5py
import numpy as np
import pytest
import torch

from lstmscope.activations import TextSpec, dump_activations, text_tokens
from lstmscope.activations_file import ActivationsError, iter_rows, open_activations, read_words, state_dataset
from lstmscope.model import cpu_kernels, load_checkpoint
from lstmscope.provenance import sha256_file
from lstmscope.vocabulary import Vocabulary, read_tokens

from neurons_support import HIDDEN, LAYERS, TEXT, divergence_csv, tiny  # noqa: F401  (fixtures)


def _ids(tiny):
    words = read_tokens(tiny.split)[TEXT.offset:TEXT.offset + TEXT.tokens]
    return words, Vocabulary.load(tiny.vocabulary).encode(words)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _hand_lstm(model, ids):
    """The LSTM equations written out in float64 numpy, from the weights: h and c of every layer and step."""
    x = model.encoder.weight.detach().double().numpy()[ids]
    hs, cs = [], []
    for k in range(model.config.layers):
        W = getattr(model.rnn, f"weight_ih_l{k}").detach().double().numpy()
        U = getattr(model.rnn, f"weight_hh_l{k}").detach().double().numpy()
        b = (getattr(model.rnn, f"bias_ih_l{k}") + getattr(model.rnn, f"bias_hh_l{k}")).detach().double().numpy()
        n = U.shape[1]
        h, c = np.zeros(n), np.zeros(n)
        H, C = np.empty((len(ids), n)), np.empty((len(ids), n))
        for t in range(len(ids)):
            z = W @ x[t] + U @ h + b
            i, f, g, o = _sigmoid(z[:n]), _sigmoid(z[n:2 * n]), np.tanh(z[2 * n:3 * n]), _sigmoid(z[3 * n:])
            c = f * c + i * g
            h = o * np.tanh(c)
            H[t], C[t] = h, c
        hs.append(H)
        cs.append(C)
        x = H
    return hs, cs


def test_top_layer_h_equals_nn_lstm_output_on_the_whole_text(tiny):
    model, _ = load_checkpoint(tiny.checkpoint)
    _, ids = _ids(tiny)
    with torch.no_grad():
        out, (hn, cn) = model.rnn(model.encoder(torch.from_numpy(ids)).unsqueeze(1), model.init_hidden(1))
    with h5py.File(tiny.activations) as f:
        top = f[f"layer{LAYERS}/h"][:]
        np.testing.assert_allclose(top, out[:, 0].numpy(), atol=2e-6, rtol=0)
        # the stream is never reset: the last stored state is nn.LSTM's final state, every layer
        for k in range(LAYERS):
            np.testing.assert_allclose(f[f"layer{k + 1}/h"][-1], hn[k, 0].numpy(), atol=2e-6, rtol=0)
            np.testing.assert_allclose(f[f"layer{k + 1}/c"][-1], cn[k, 0].numpy(), atol=2e-6, rtol=0)


def test_h_and_c_match_the_lstm_cell_equations_computed_by_hand(tiny):
    model, _ = load_checkpoint(tiny.checkpoint)
    _, ids = _ids(tiny)
    steps = np.r_[0:5, 63:66, 200, 399]  # the first steps, across a block boundary (64 rows), the end
    H, C = _hand_lstm(model, ids[:400])
    with h5py.File(tiny.activations) as f:
        for k in range(LAYERS):
            np.testing.assert_allclose(f[f"layer{k + 1}/c"][:][steps], C[k][steps], atol=2e-5, rtol=0)
            np.testing.assert_allclose(f[f"layer{k + 1}/h"][:][steps], H[k][steps], atol=2e-5, rtol=0)


def test_expectancy_is_the_softmax_entry_of_the_next_word_and_the_softmax_sums_to_one(tiny):
    model, _ = load_checkpoint(tiny.checkpoint)
    _, ids = _ids(tiny)
    W = model.decoder.weight.detach().double().numpy()
    b = model.decoder.bias.detach().double().numpy()
    with h5py.File(tiny.activations) as f:
        top = f[f"layer{LAYERS}/h"][:].astype(np.float64)
        p, logp = f["expectancy"][:], f["log_expectancy"][:]
    assert np.isnan(p[0]) and np.isnan(logp[0])  # the first word has no context
    for t in (0, 1, 63, 64, 250, len(ids) - 2):
        logits = W @ top[t] + b
        softmax = np.exp(logits - logits.max())
        softmax /= softmax.sum()
        nxt = ids[t + 1]
        assert p[t + 1] == pytest.approx(softmax[nxt], rel=1e-4)
        rest = np.delete(softmax, nxt).sum()
        assert p[t + 1] + rest == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(np.exp(logp[1:]), p[1:], rtol=1e-6)
    assert np.all((p[1:] > 0) & (p[1:] < 1))
    # the dump's own normaliser: its log-probabilities of every word of the vocabulary after one context sum to 1,
    # with and without the shift by the row maximum (bound 0: known small logits; 1e9: the maximum is looked at)
    from lstmscope.activations import next_token_log_probabilities

    vocabulary = torch.arange(model.config.vocab_size)
    for t in (0, 250, len(ids) - 2):
        h = torch.from_numpy(top[t].astype(np.float32)).expand(len(vocabulary), -1).contiguous()
        for bound in (0.0, 1e9):
            every = next_token_log_probabilities(model.decoder, h, vocabulary, rows=64, bound=bound).double()
            assert every.exp().sum().item() == pytest.approx(1.0, abs=1e-5), (t, bound)
            assert every[ids[t + 1]].exp().item() == pytest.approx(p[t + 1], rel=1e-4)


def test_schema_attributes_and_provenance(tiny):
    words, ids = _ids(tiny)
    with open_activations(tiny.activations) as f:
        assert f["tokens/ids"].dtype == np.int32 and f["tokens/ids"].shape == (TEXT.tokens,)
        np.testing.assert_array_equal(f["tokens/ids"][:], ids)
        # the words as the model read them: <unk> exactly where the vocabulary lacks the split's word
        vocab = Vocabulary.load(tiny.vocabulary)
        read = read_words(f)
        unknown = [i for i, w in enumerate(words) if w not in vocab.index]
        assert 20 < len(unknown) < TEXT.tokens // 2 and f.attrs["unknown_words"] == len(unknown)
        assert all(read[i] == "<unk>" for i in unknown)
        assert [w for i, w in enumerate(read) if i not in unknown] == [w for i, w in enumerate(words) if i not in unknown]
        assert [w.decode() for w in f["tokens/split_words"][:]] == words
        assert h5py.check_string_dtype(f["tokens/split_words"].dtype).encoding == "utf-8"
        assert h5py.check_string_dtype(f["tokens/words"].dtype).encoding == "utf-8"
        for k in range(1, LAYERS + 1):
            for s in ("h", "c"):
                ds = f[f"layer{k}/{s}"]
                assert ds.shape == (TEXT.tokens, HIDDEN) and ds.dtype == np.float32 and ds.chunks == (64, HIDDEN)
        assert f["expectancy"].dtype == np.float32 and f["log_expectancy"].dtype == np.float32
        a = f.attrs
        assert (a["model"], a["text"], a["split"], a["offset"], a["n_tokens"]) == ("d0.2_r0", "test", "test", 300, 400)
        assert (a["layers"], a["hidden_size"], a["dtype"], a["dropout"], a["seed"]) == (LAYERS, HIDDEN, "float32", 0.2, 3)
        assert a["checkpoint_sha256"] == sha256_file(tiny.checkpoint)
        prov = json.loads(a["provenance"])
        assert prov["checkpoint_sha256"] == a["checkpoint_sha256"]
        assert prov["model_config"]["hidden_size"] == HIDDEN and prov["offset"] == 300
        assert prov["data_sha256"] == {"test": hashlib.sha256(tiny.split.read_bytes()).hexdigest()}  # the split's
        assert {"lstmscope_version", "git_commit", "library_sha256"} <= set(prov)
        assert prov["device"] == "cpu" and prov["gpu"] is None and prov["cpu_kernels"] == cpu_kernels()


def test_blocks_do_not_reset_the_state_and_runs_are_reproducible(tiny, tmp_path):
    other = tmp_path / "blocks7.h5"
    dump_activations(tiny.checkpoint, tiny.vocabulary, tiny.split, TEXT, other, chunk_tokens=7)
    with h5py.File(tiny.activations) as a, h5py.File(other) as b:
        assert b["layer1/c"].chunks == (7, HIDDEN)
        for key in ("layer1/h", "layer1/c", "layer2/h", "layer2/c", "expectancy"):
            np.testing.assert_allclose(b[key][:], a[key][:], atol=1e-6, rtol=0, equal_nan=True)
    again = tmp_path / "again.h5"
    dump_activations(tiny.checkpoint, tiny.vocabulary, tiny.split, TEXT, again, chunk_tokens=64)
    with h5py.File(tiny.activations) as a, h5py.File(again) as b:
        for key in ("layer1/h", "layer2/c", "log_expectancy"):
            np.testing.assert_array_equal(b[key][:], a[key][:])


def test_float16_option(tiny, tmp_path):
    out = tmp_path / "half.h5"
    dump_activations(tiny.checkpoint, tiny.vocabulary, tiny.split, TEXT, out, dtype="float16", chunk_tokens=64)
    with h5py.File(tiny.activations) as a, h5py.File(out) as b:
        assert b["layer2/c"].dtype == np.float16 and b.attrs["dtype"] == "float16"
        assert b["expectancy"].dtype == np.float32
        np.testing.assert_allclose(b["layer2/c"][:].astype(np.float32), a["layer2/c"][:], rtol=2e-3, atol=1e-4)
        blocks = [blk for _, blk in iter_rows(b["layer1/h"])]
        assert all(blk.dtype == np.float32 for blk in blocks) and sum(len(blk) for blk in blocks) == TEXT.tokens


def test_missing_and_corrupt_checkpoint_name_the_file(tiny, tmp_path):
    out = tmp_path / "out.h5"
    with pytest.raises(FileNotFoundError, match=r"nowhere\.pt: checkpoint not found$"):
        dump_activations(tmp_path / "nowhere.pt", tiny.vocabulary, tiny.split, TEXT, out)
    bad = tmp_path / "corrupt.pt"
    bad.write_bytes(tiny.checkpoint.read_bytes()[:500])
    with pytest.raises(ValueError, match="corrupt.pt"):
        dump_activations(bad, tiny.vocabulary, tiny.split, TEXT, out)
    assert not out.exists()


def test_text_longer_than_its_split_is_refused_and_leaves_no_file(tiny, tmp_path):
    n = len(read_tokens(tiny.split))
    spec = TextSpec(name="long", split="test", offset=n - 10, tokens=20)
    with pytest.raises(ActivationsError, match=rf"texts\.long: offset {n - 10} \+ tokens 20 .* split 'test' .*{n} tokens"):
        text_tokens(tiny.split, spec)
    out = tmp_path / "long.h5"
    with pytest.raises(ActivationsError, match="texts.long"):
        dump_activations(tiny.checkpoint, tiny.vocabulary, tiny.split, spec, out)
    assert not out.exists() and not list(tmp_path.glob(".*tmp*"))


def test_bad_activation_files_layers_and_states_name_file_and_key(tiny, tmp_path):
    with pytest.raises(ActivationsError, match="absent.h5: activations file not found"):
        open_activations(tmp_path / "absent.h5")
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an HDF5 file at all" * 10)
    with pytest.raises(ActivationsError, match="garbage.h5: not a readable HDF5 file"):
        open_activations(garbage)
    partial = tmp_path / "partial.h5"
    shutil.copy(tiny.activations, partial)
    with h5py.File(partial, "a") as f:
        del f["layer2/c"]
    with pytest.raises(ActivationsError, match="partial.h5: dataset 'layer2/c' is missing"):
        open_activations(partial)
    old = tmp_path / "old.h5"  # format 1: tokens/words held the split's words, no tokens/split_words
    shutil.copy(tiny.activations, old)
    with h5py.File(old, "a") as f:
        f.attrs["format"] = "lstmscope-activations-1"
    with pytest.raises(ActivationsError, match="^[^ ]*old.h5: an activations file of format lstmscope-activations-1, "
                                               "written by another version of lstmscope; this one reads "
                                               "lstmscope-activations-2: dump it again$"):
        open_activations(old)
    with h5py.File(old, "a") as f:
        f.attrs["format"] = "lstmscope-histograms-1"  # another of the project's files
    with pytest.raises(ActivationsError, match="old.h5: not a lstmscope activations file \\(format is "
                                               "'lstmscope-histograms-1', not lstmscope-activations-2\\)$"):
        open_activations(old)
    with open_activations(tiny.activations) as f:
        with pytest.raises(ActivationsError, match=r"layer 3 does not exist; the file has layers 1\.\.2"):
            state_dataset(f, 3, "h")
        with pytest.raises(ActivationsError, match="state 'x' does not exist"):
            state_dataset(f, 1, "x")


def _replaced(f, key, data):
    """Dataset ``key`` of the open file ``f`` replaced by ``data`` (another shape or dtype)."""
    del f[key]
    f.create_dataset(key, data=data)


def _emptied(f):
    """Every dataset cut to 0 rows and n_tokens 0, as a dump of nothing would write it."""
    for key in ("tokens/ids", "tokens/words", "tokens/split_words", "expectancy", "log_expectancy",
                *(f"layer{k}/{s}" for k in range(1, LAYERS + 1) for s in ("h", "c"))):
        _replaced(f, key, f[key][:0])
    f.attrs["n_tokens"] = 0


@pytest.mark.parametrize("edit, message", [
    (lambda f: _replaced(f, "layer1/c", f["layer1/c"][:, :HIDDEN // 2]),
     rf"layer1/c has {HIDDEN // 2} columns, hidden_size says {HIDDEN}"),
    (lambda f: f.attrs.__setitem__("hidden_size", 2 * HIDDEN), rf"layer1/h has {HIDDEN} columns, hidden_size says "
                                                               rf"{2 * HIDDEN}"),
    (lambda f: _replaced(f, "layer1/h", f["layer1/h"][:, 0]),
     rf"dataset 'layer1/h' has shape \({TEXT.tokens},\), expected \(n_tokens, hidden_size\) = "
     rf"\({TEXT.tokens}, {HIDDEN}\)"),
    (lambda f: _replaced(f, "layer2/c", f["layer2/c"][:].astype(np.int16)),
     "dataset 'layer2/c' holds int16, expected floating-point numbers"),
    (lambda f: _replaced(f, "tokens/ids", f["tokens/ids"][:][:, None]),
     rf"dataset 'tokens/ids' has shape \({TEXT.tokens}, 1\), expected \(n_tokens,\) = \({TEXT.tokens},\)"),
    (lambda f: _replaced(f, "tokens/ids", f["tokens/ids"][:-1]),
     rf"dataset 'tokens/ids' has {TEXT.tokens - 1} rows, expected n_tokens={TEXT.tokens}"),
    (lambda f: _replaced(f, "tokens/ids", f["tokens/ids"][:].astype(np.float32)),
     "dataset 'tokens/ids' holds float32, expected integers"),
    (lambda f: _replaced(f, "tokens/words", np.arange(TEXT.tokens)), "dataset 'tokens/words' holds int64, expected "
                                                                     "strings"),
    (_emptied, r"attribute n_tokens=0; it must be at least 1 \(an empty or unfinished dump\?\)"),
    (lambda f: f.attrs.__setitem__("n_tokens", "many"), "attribute n_tokens='many' is not a whole number"),
    # the ablation copies the dropout and the provenance into its own file: refused here, not a KeyError there
    (lambda f: f.attrs.__delitem__("dropout"), r"not a lstmscope activations file \(missing attributes: dropout; "
                                              r"format must be lstmscope-activations-2\)"),
    (lambda f: f.attrs.__setitem__("provenance", "{cut"),
     r"attribute provenance is not JSON \('\{cut'\): the file is damaged; dump it again"),
    # every stage reads the layers the attribute names: a layer beyond it would be left out of all of them
    (lambda f: f.attrs.__setitem__("layers", 1),
     "attribute layers=1, but it holds group layer2: the file is damaged; dump it again"),
], ids=["narrow-c", "hidden-size", "1d-h", "int-c", "2d-ids", "short-ids", "float-ids", "int-words", "no-tokens",
        "n-tokens-text", "no-dropout", "provenance-not-json", "layers-too-few"])
def test_a_malformed_activations_file_is_refused_in_one_line_naming_file_and_key(tiny, tmp_path, edit, message):
    bad = tmp_path / "bad.h5"
    shutil.copyfile(tiny.activations, bad)
    with h5py.File(bad, "a") as f:
        edit(f)
    with pytest.raises(ActivationsError, match=rf"^{re.escape(str(bad))}: {message}$"):
        open_activations(bad)


def test_data_that_cannot_be_read_is_an_error_naming_the_file_in_every_stage(tiny, tmp_path):
    """A file damaged after it was written (its words' heap overwritten, as a disk or a transfer does): it opens,
    its attributes and shapes check out, its words cannot be read. A stage reading them stops in one line naming
    the file, where h5py's OSError names none; a damaged file of another kind read inside the block is not blamed
    on the activations file."""
    from lstmscope.embedding import read_states

    damaged = tmp_path / "damaged.h5"
    shutil.copy(tiny.activations, damaged)
    with h5py.File(damaged) as f:
        ds = f["tokens/words"]
        offset = ds.id.get_offset() if ds.chunks is None else ds.id.get_chunk_info(0).byte_offset
    with open(damaged, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xff" * 256)
    message = (rf"^{re.escape(str(damaged))}: a part of it cannot be read \(.*read data.*\): the file is damaged or "
               r"cut short; dump it again$")
    with pytest.raises(ActivationsError, match=message):
        read_states(damaged, 2, "c")
    with pytest.raises(OSError, match="read data"), open_activations(tiny.activations) as f, h5py.File(damaged) as g:
        f["layer2/c"][:], g["tokens/words"][:]


def test_opening_an_activations_file_reads_no_data(tiny, monkeypatch):
    """The checks are of shapes and dtypes only: a file of GBs opens at once."""
    def refuse(*args, **kwargs):
        raise AssertionError("open_activations read data")

    monkeypatch.setattr(h5py.Dataset, "__getitem__", refuse)
    monkeypatch.setattr(h5py.Dataset, "read_direct", refuse)
    with open_activations(tiny.activations) as f:
        assert f["layer1/h"].shape == (TEXT.tokens, HIDDEN)


@pytest.mark.parametrize("scale", [1.0, 40.0])  # small logits: no shift; large ones: shifted by the row maximum
def test_target_log_probabilities_equal_log_softmax(scale):
    from lstmscope.activations import target_log_probabilities

    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 3000, generator=g) * scale
    targets = torch.randint(0, 3000, (50,), generator=g)
    expected = torch.log_softmax(logits.double(), dim=1)[torch.arange(50), targets]
    got = target_log_probabilities(logits.clone(), targets)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("weight_scale", [0.1, 30.0])  # |logit| bounded by 60: no row maximum; unbounded: shifted
@pytest.mark.parametrize("rows", [7, 256])               # blocks that do and do not divide the text
def test_next_token_log_probabilities_equal_log_softmax_of_the_decoder(weight_scale, rows):
    from lstmscope.activations import next_token_log_probabilities

    g = torch.Generator().manual_seed(1)
    decoder = torch.nn.Linear(16, 500)
    with torch.no_grad():
        decoder.weight.copy_(torch.randn(500, 16, generator=g) * weight_scale)
        decoder.bias.copy_(torch.randn(500, generator=g))
    h = torch.rand(45, 16, generator=g) * 2 - 1
    targets = torch.randint(0, 500, (45,), generator=g)
    with torch.no_grad():
        logits = torch.nn.functional.linear(h.double(), decoder.weight.double(), decoder.bias.double())
    expected = torch.log_softmax(logits, dim=1)[torch.arange(45), targets]
    got = next_token_log_probabilities(decoder, h, targets, rows=rows)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.double(), expected.detach(), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("steps", [1, 2, 7, 64, 1000])  # powers of two and not: every round of the scan
def test_the_parallel_scan_gives_the_sequential_scans_cell_states(steps):
    from lstmscope.activations import scan_cells, scan_cells_parallel

    rng = np.random.default_rng(steps)
    forget = rng.uniform(0.5, 1.0, (steps, 30)).astype(np.float32)
    forget[:, 0] = 1.0  # a unit that never forgets: c is the running sum of its updates
    update = rng.uniform(-1, 1, (steps, 30)).astype(np.float32)
    c0 = rng.normal(0, 5, 30).astype(np.float32)
    exact = scan_cells(forget.astype(np.float64), update.astype(np.float64), c0.astype(np.float64))
    np.testing.assert_allclose(exact[:, 0], c0[0] + np.cumsum(update[:, 0], dtype=np.float64), rtol=1e-12)
    got = scan_cells_parallel(torch.from_numpy(forget), torch.from_numpy(update), torch.from_numpy(c0)).numpy()
    assert got.dtype == np.float32
    # float32 rounding only: as close to float64 as the sequential float32 scan
    sequential = scan_cells(forget, update, c0)
    tolerance = max(4 * np.abs(sequential - exact).max(), 1e-6 * np.abs(exact).max())
    np.testing.assert_allclose(got, exact, atol=tolerance, rtol=0)


def test_the_gpus_way_of_computing_a_block_gives_the_cell_equations_on_the_cpu_too(tiny):
    """What a GPU dump does (the parallel scan, the next block started before one is handed out), run on the CPU:
    the states of the cell equations, the CPU dump's expectancies, and blocks that carry the state."""
    from lstmscope.activations import iterate_activations

    model, _ = load_checkpoint(tiny.checkpoint)
    _, ids = _ids(tiny)
    ids = ids[:300]
    H, C = _hand_lstm(model, ids)
    blocks = list(iterate_activations(model, ids, 64, gpu_way=True))
    assert [b.start for b in blocks] == [0, 64, 128, 192, 256]
    for k in range(LAYERS):
        np.testing.assert_allclose(np.concatenate([b.h[k] for b in blocks]), H[k], atol=2e-5, rtol=0)
        np.testing.assert_allclose(np.concatenate([b.c[k] for b in blocks]), C[k], atol=2e-5, rtol=0)
    sequential = list(iterate_activations(model, ids, 64, gpu_way=False))
    np.testing.assert_allclose(np.concatenate([b.log_expectancy for b in blocks]),
                               np.concatenate([b.log_expectancy for b in sequential]), atol=1e-5, equal_nan=True)


def test_blocks_computed_in_a_background_thread_arrive_in_order_and_errors_and_stops_reach_both_sides():
    import threading

    from lstmscope.activations import in_background

    where, produced, closed = set(), [], []

    def source(n, fail_at=None):
        try:
            for i in range(n):
                where.add(threading.current_thread().name)
                if i == fail_at:
                    raise ValueError(f"block {i} failed")
                produced.append(i)
                yield i
        finally:
            closed.append(threading.current_thread().name)

    assert list(in_background(source(50), depth=2)) == list(range(50))
    assert where == {"activations"} and closed == ["activations"]  # computed and closed in the thread

    produced.clear()
    with pytest.raises(ValueError, match="^block 7 failed$"):
        list(in_background(source(50, fail_at=7)))
    assert produced == list(range(7))

    produced.clear()
    closed.clear()
    items = in_background(source(1000), depth=2)
    assert next(items) == 0
    items.close()  # the caller stops (write_activations closes it however it ends): the thread stops, closes the source
    assert closed == ["activations"]
    assert len(produced) <= 4  # the item handed out, `depth` waiting, the one being put
    assert not any(t.name == "activations" for t in threading.enumerate())


def test_a_dump_computed_in_a_thread_writes_the_same_and_a_failed_write_stops_the_thread(tiny, tmp_path, monkeypatch):
    """write_activations as on a GPU (the blocks computed in a thread while it writes), here on the CPU: the same
    file; and when a write fails (a full disk), the thread is gone at once, though the error is kept (as Snakemake's
    job keeps it until the process ends, where a live thread computing on a GPU aborted the process)."""
    import threading

    from lstmscope.activations import write_activations

    model, _ = load_checkpoint(tiny.checkpoint)
    words, ids = _ids(tiny)
    out = tmp_path / "thread.h5"
    write_activations(model, ids, words, out, chunk_tokens=64, progress=False, background=True)
    with h5py.File(tiny.activations) as a, h5py.File(out) as b:
        for key in ("layer1/h", "layer1/c", "layer2/h", "layer2/c", "log_expectancy"):
            np.testing.assert_allclose(b[key][:], a[key][:], atol=1e-6, rtol=0, equal_nan=True)

    writes, computing = [], []

    def full_disk(self, key, value):
        writes.append(key)
        computing.append(any(t.name == "activations" for t in threading.enumerate()))
        if len(writes) == 6:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(h5py.Dataset, "__setitem__", full_disk)
    failed = tmp_path / "failed.h5"
    with pytest.raises(OSError, match="No space left on device"):
        write_activations(model, ids, words, failed, chunk_tokens=16, progress=True, background=True)
    assert len(writes) == 6 and computing[-1]  # the thread was alive (computing or handing over) when the write failed
    assert not any(t.name == "activations" for t in threading.enumerate())
    assert list(tmp_path.iterdir()) == [out]  # nothing half-written left


def test_a_checkpoint_of_another_vocabulary_is_refused(tiny, tmp_path):
    from lstmscope.vocabulary import build_vocabulary

    other = tmp_path / "other-vocabulary.json"
    build_vocabulary([["a", "b", "<unk>", "<eos>"]]).save(other)
    with pytest.raises(ActivationsError, match=r"model.pt: trained with another vocabulary than .*other-vocabulary.json"):
        dump_activations(tiny.checkpoint, other, tiny.split, TEXT, tmp_path / "x.h5")
    assert not (tmp_path / "x.h5").exists()


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_device_setting_is_checked_and_auto_without_a_gpu_runs_on_the_cpu(tiny, tmp_path):
    out = tmp_path / "dev.h5"
    with pytest.raises(ValueError, match="activations.device='gpu': choose auto, cpu or cuda"):
        dump_activations(tiny.checkpoint, tiny.vocabulary, tiny.split, TEXT, out, device="gpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="activations.device is 'cuda' but no CUDA device is available"):
            dump_activations(tiny.checkpoint, tiny.vocabulary, tiny.split, TEXT, out, device="cuda")
    assert not out.exists()
    # auto without a GPU given to the job (gpus=0): the CPU, the same numbers as the CPU dump
    dump_activations(tiny.checkpoint, tiny.vocabulary, tiny.split, TEXT, out, chunk_tokens=64, device="auto", gpus=0)
    with h5py.File(tiny.activations) as a, h5py.File(out) as b:
        assert json.loads(b.attrs["provenance"])["device"] == "cpu"
        for key in ("layer1/h", "layer2/c", "log_expectancy"):
            np.testing.assert_array_equal(b[key][:], a[key][:])


@CUDA
def test_a_gpu_dump_matches_the_cpu_dump_and_the_cell_equations(tiny, tmp_path):
    out = tmp_path / "gpu.h5"
    dump_activations(tiny.checkpoint, tiny.vocabulary, tiny.split, TEXT, out, chunk_tokens=64, device="cuda")
    model, _ = load_checkpoint(tiny.checkpoint)
    _, ids = _ids(tiny)
    H, C = _hand_lstm(model, ids)
    with h5py.File(tiny.activations) as a, h5py.File(out) as b:
        prov = json.loads(b.attrs["provenance"])
        assert prov["device"] == "cuda" and prov["gpu"] == torch.cuda.get_device_name(0)
        for k in range(LAYERS):
            np.testing.assert_allclose(b[f"layer{k + 1}/h"][:], H[k], atol=2e-5, rtol=0)
            np.testing.assert_allclose(b[f"layer{k + 1}/c"][:], C[k], atol=2e-5, rtol=0)
            for s in ("h", "c"):
                np.testing.assert_allclose(b[f"layer{k + 1}/{s}"][:], a[f"layer{k + 1}/{s}"][:], atol=1e-5, rtol=0)
        np.testing.assert_allclose(b["log_expectancy"][:], a["log_expectancy"][:], atol=1e-4, rtol=0, equal_nan=True)


@CUDA
def test_the_gpus_way_computes_what_the_gpu_computes_block_after_block(tiny, tmp_path):
    """The parallel scan, the blocks computed ahead and the writing thread change no number but the order of the
    scan's additions: against the same GPU computing and handing out one block after another."""
    from lstmscope.activations import iterate_activations, write_activations

    model, _ = load_checkpoint(tiny.checkpoint)
    model = model.to("cuda")
    words, ids = _ids(tiny)
    ahead = list(iterate_activations(model, ids, 64))
    plain = list(iterate_activations(model, ids, 64, gpu_way=False))
    assert [b.start for b in ahead] == [b.start for b in plain] == list(range(0, TEXT.tokens, 64))
    for a, b in zip(ahead, plain):
        for k in range(LAYERS):
            np.testing.assert_array_equal(a.h[k], b.h[k])
            np.testing.assert_allclose(a.c[k], b.c[k], atol=1e-6, rtol=0)
        np.testing.assert_array_equal(a.log_expectancy, b.log_expectancy)
    out = tmp_path / "gpu.h5"
    write_activations(model, ids, words, out, chunk_tokens=64, progress=False)
    with h5py.File(out) as f:
        for k in range(LAYERS):
            np.testing.assert_array_equal(f[f"layer{k + 1}/h"][:], np.concatenate([b.h[k] for b in ahead]))
            np.testing.assert_array_equal(f[f"layer{k + 1}/c"][:], np.concatenate([b.c[k] for b in ahead]))


def test_the_readmes_python_example_reads_a_real_activations_file(tiny, capsys):
    """The README's snippet, run on a real file (the test model's, whose layers have 12 neurons: neuron 5)."""
    import re
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    code = re.search(r"The files are plain HDF5.*?```python\n(.*?)```", readme, flags=re.S).group(1)
    assert '"results/activations/d0.0_r0/test.h5"' in code and '[:, 50]' in code and ".head()" in code
    code = code.replace('"results/activations/d0.0_r0/test.h5"', repr(str(tiny.activations))).replace("[:, 50]",
                                                                                                        "[:, 5]")
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    with h5py.File(tiny.activations) as f:
        words = [w.decode() for w in f["tokens/words"][:]]
        h = f["layer2/h"][:, 5].astype(np.float64)
    means = {w: h[[i for i, x in enumerate(words) if x == w]].mean() for w in set(words)}
    lowest = sorted(means, key=means.get)[:5]  # the snippet prints the neuron's five lowest words, lowest first
    assert [line.split()[0] for line in printed[:5]] == lowest


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine whose torch has no CUDA")
def test_auto_warns_when_slurm_gave_a_gpu_that_torch_cannot_use(monkeypatch, caplog):
    """A CPU build of torch on a GPU node (e.g. a --sdm conda environment solved on a login node without a GPU) would
    compute on the CPU for hours with the GPU idle: the job's log says so, naming what says a GPU was given."""
    from lstmscope.model import choose_device

    for name in ("SLURM_JOB_GPUS", "SLURM_STEP_GPUS", "SLURM_GPUS_ON_NODE"):
        monkeypatch.delenv(name, raising=False)
    with caplog.at_level("WARNING", logger="lstmscope.model"):
        assert choose_device("auto", 1, "training.device").type == "cpu"  # a workstation without a GPU: quiet
        monkeypatch.setenv("SLURM_GPUS_ON_NODE", "0")
        assert choose_device("auto", 1, "training.device").type == "cpu"  # SLURM, but no GPU given: quiet
        assert caplog.records == []
        monkeypatch.setenv("SLURM_JOB_GPUS", "0")  # GPU index 0 given
        assert choose_device("auto", 0, "training.device").type == "cpu"  # the rule asked for none: quiet
        assert caplog.records == []
        assert choose_device("auto", 1, "training.device").type == "cpu"
    assert [r.getMessage() for r in caplog.records] == [
        f"training.device is 'auto' and the job was given a GPU (SLURM_JOB_GPUS=0) but torch {torch.__version__} sees "
        "no CUDA device, so it computes on the CPU (a CPU build of torch? with --sdm conda, create the environments "
        "with CONDA_OVERRIDE_CUDA set, e.g. 12.4; or set training.device: cpu and a CPU partition)"]


@pytest.mark.parametrize("key,token,value,said", [
    ("expectancy", 5, 1.5, "expectancy of token 5 is 1.5, which no probability is"),
    ("expectancy", 7, -0.25, "expectancy of token 7 is -0.25, which no probability is"),
    ("expectancy", 9, np.nan, "expectancy of token 9 is nan, which no probability is"),
    ("log_expectancy", 11, 0.5, "log_expectancy of token 11 is 0.5, which no log-probability is"),
])
def test_an_expectancy_no_probability_has_is_refused_naming_file_and_token(tiny, tmp_path, capsys, key, token, value,
                                                                          said):
    """p > 1, p < 0 or NaN after the first token (a damaged file) were drawn as colours: the heatmap, both explorers
    and lstmscope-heatmap --expectancy wrote their output with exit status 0. Token 0's NaN (no context) is fine."""
    from lstmscope.activations_file import read_expectancy
    from lstmscope.heatmap_cli import main

    with open_activations(tiny.activations) as f:
        p, logp = read_expectancy(f), read_expectancy(f, log=True)
    assert np.isnan(p[0]) and np.all((p[1:] > 0) & (p[1:] <= 1)) and np.allclose(np.log(p[1:]), logp[1:], atol=1e-5)
    damaged = tmp_path / "bad.h5"
    shutil.copy(tiny.activations, damaged)
    with h5py.File(damaged, "r+") as f:
        f[key][token] = value
    with open_activations(damaged) as f:
        with pytest.raises(ActivationsError, match=re.escape(f"{damaged}: {said}")):
            read_expectancy(f, log=key == "log_expectancy")
        assert len(read_expectancy(f, 0, token, log=key == "log_expectancy")) == token  # before it: fine
    if key == "expectancy":
        out = tmp_path / "e.png"
        assert main([str(damaged), "--expectancy", "--start", "0", "--tokens", "20", "-o", str(out)]) == 1
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and said in err and not out.exists()


@pytest.mark.parametrize("state, value", [("h", np.nan), ("c", np.inf)])
def test_a_state_no_lstm_has_is_refused_by_every_reader_of_a_neuron_naming_token_and_neuron(tiny, divergence_csv,
                                                                                           tmp_path, capsys, state,
                                                                                           value):
    """A NaN or infinite state (a damaged file) was drawn as a gap in the heatmaps and pages (exit status 0), written
    into the tracking table as its mean, or blamed on the divergence table."""
    import pandas as pd

    from lstmscope.heatmap_cli import main
    from lstmscope.neuron_explorer import build_neuron_explorer
    from lstmscope.neuron_heatmaps import text_heatmaps
    from lstmscope.tracking import neuron_tracking

    table = pd.read_csv(divergence_csv)
    neuron = int(table[(table.layer == 1) & (table.state == state) & (table["rank"] == 1)].neuron.iloc[0])
    damaged = tmp_path / "bad.h5"
    shutil.copy(tiny.activations, damaged)
    with h5py.File(damaged, "r+") as f:
        f[f"layer1/{state}"][30, neuron] = value
    said = f"{damaged}: layer1/{state} of token 30, neuron {neuron} is {value:g}, which no LSTM state is"
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ActivationsError, match=re.escape(said)):
        neuron_tracking(damaged, divergence_csv, out / "t.csv", top_k=2, top_words=4)
    with pytest.raises(ActivationsError, match=re.escape(said)):
        text_heatmaps(damaged, divergence_csv, {(1, state): (str(out / "a.png"), str(out / "a.svg"))}, 2, 40)
    with pytest.raises(ActivationsError, match=re.escape(said)):
        build_neuron_explorer(damaged, divergence_csv, out / "x.html", 2, 40, "t")
    assert main([str(damaged), "-n", f"1:{neuron}", "--start", "0", "--tokens", "60", "-o", str(out / "h.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and said in err
    # the passage chosen on the neuron's values (no --start), on a scale that reads only the passage drawn
    assert main([str(damaged), "-n", f"1:{neuron}", "--around", state, "--scale", "symmetric", "--tokens", "60",
                 "-o", str(out / "h.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and said in err
    assert list(out.iterdir()) == []
