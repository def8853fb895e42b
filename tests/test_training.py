"""Model, batching, checkpoints and the resumable, deterministic trainer on real WikiText-2 tokens."""
from __future__ import annotations

import dataclasses
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from conftest import WIKITEXT2 as DATA, skip_or_fail
from damage import damage_largest_part
from lstmscope.kernels import PORTABLE_KERNELS
from lstmscope.model import LSTMLanguageModel, ModelConfig, load_checkpoint, save_checkpoint
from lstmscope.training import TrainingConfig, TrainingError, batchify, get_batch, train
from lstmscope.vocabulary import build_vocabulary, read_tokens

torch.set_num_threads(1)  # deterministic and fast for tiny models on a shared 2-core machine


@pytest.fixture(scope="module")
def corpus(wikitext2):
    """A small real corpus: the first 3 000 training and 800 validation tokens of WikiText-2."""
    train_tokens = read_tokens(DATA / "train.txt")[:3000]
    valid_tokens = read_tokens(DATA / "valid.txt")[:800]
    vocab = build_vocabulary([train_tokens, valid_tokens], max_size=500)
    return vocab, torch.from_numpy(vocab.encode(train_tokens)), torch.from_numpy(vocab.encode(valid_tokens))


def tiny_config(vocab, dropout=0.3) -> ModelConfig:
    return ModelConfig(vocab_size=len(vocab), embedding_size=8, hidden_size=12, layers=2, dropout=dropout)


CFG = TrainingConfig(epochs=2, lr=20.0, bptt=10, batch_size=4, eval_batch_size=4, save_every_batches=7, seed=5)


def test_batchify_and_get_batch_follow_pytorch_examples():
    ids = torch.arange(26)
    b = batchify(ids, 4)  # 24 tokens kept, 4 columns of 6
    assert b.shape == (6, 4)
    assert b[:, 1].tolist() == list(range(6, 12))  # each column is a contiguous stream
    data, target = get_batch(b, 0, 4)
    assert data.shape == (4, 4)
    assert torch.equal(target, b[1:5].reshape(-1))
    data, target = get_batch(b, 4, 4)  # the last batch is shorter
    assert data.shape == (1, 4) and torch.equal(target, b[5:6].reshape(-1))
    with pytest.raises(TrainingError, match="3 tokens are too few for batch size 4"):
        batchify(torch.arange(3), 4)


def test_dropout_acts_on_embeddings_between_layers_and_output_only(corpus):
    vocab, train_ids, _ = corpus
    torch.manual_seed(0)
    model = LSTMLanguageModel(ModelConfig(len(vocab), 64, 64, 2, dropout=0.5))
    seen = {}
    model.rnn.register_forward_hook(lambda m, inp, out: seen.update(rnn_in=inp[0].detach(), rnn_out=out[0].detach(),
                                                                    h_n=out[1][0].detach(), c_n=out[1][1].detach()))
    model.decoder.register_forward_hook(lambda m, inp, out: seen.update(dec_in=inp[0].detach()))
    tokens = batchify(train_ids[:400], 4)[:20]
    model.train()
    model(tokens, model.init_hidden(4))
    emb = model.encoder(tokens)
    # embeddings: about half the units zeroed, the rest scaled by 1/(1-p)
    zero = seen["rnn_in"] == 0
    assert 0.4 < zero.float().mean() < 0.6
    assert torch.allclose(seen["rnn_in"][~zero], 2 * emb[~zero].detach())
    # output: the decoder sees a dropped version of the LSTM output
    assert 0.4 < (seen["dec_in"] == 0).float().mean() < 0.6
    kept = seen["dec_in"] != 0
    assert torch.allclose(seen["dec_in"][kept], 2 * seen["rnn_out"].reshape(seen["dec_in"].shape)[kept])
    # no recurrent dropout: layer 1 computed alone, undropped, from the dropped embeddings gives the states the
    # model's layer 1 ended on; between layers nn.LSTM's own dropout: layer 2 computed alone on layer 1's output as
    # it is does not give the model's output
    def layer(k: int) -> torch.nn.LSTM:
        one = torch.nn.LSTM(64, 64, 1)
        one.load_state_dict({name.replace(f"_l{k}", "_l0"): w for name, w in model.rnn.state_dict().items()
                             if name.endswith(f"_l{k}")})
        return one.eval()

    with torch.no_grad():
        first, (h1, c1) = layer(0)(seen["rnn_in"], tuple(x[:1] for x in model.init_hidden(4)))
        second, _ = layer(1)(first, tuple(x[:1] for x in model.init_hidden(4)))
    assert torch.allclose(seen["h_n"][0], h1[0], atol=1e-6) and torch.allclose(seen["c_n"][0], c1[0], atol=1e-6)
    assert (seen["rnn_out"] - second).abs().max() > 0.01
    # in eval mode nothing is dropped: layer 2 on layer 1's output as it is
    model.eval()
    model(tokens, model.init_hidden(4))
    assert torch.allclose(seen["rnn_in"], emb.detach())
    with torch.no_grad():
        first, _ = layer(0)(emb, tuple(x[:1] for x in model.init_hidden(4)))
        second, _ = layer(1)(first, tuple(x[:1] for x in model.init_hidden(4)))
    assert torch.allclose(seen["rnn_out"], second, atol=1e-6)
    # one layer: nothing between layers to drop, nothing dropped in its recurrence
    single = LSTMLanguageModel(ModelConfig(len(vocab), 64, 64, 1, dropout=0.5)).train()
    hook = single.rnn.register_forward_hook(lambda m, inp, out: seen.update(rnn_in=inp[0].detach(),
                                                                           rnn_out=out[0].detach()))
    single(tokens, single.init_hidden(4))
    hook.remove()  # the call below must not overwrite what the model's pass recorded
    with torch.no_grad():
        alone, _ = single.rnn.eval()(seen["rnn_in"], single.init_hidden(4))
    assert torch.allclose(seen["rnn_out"], alone, atol=1e-6) and not torch.equal(seen["rnn_in"], single.encoder(tokens))


def test_checkpoint_round_trip(tmp_path, corpus):
    vocab, train_ids, _ = corpus
    torch.manual_seed(1)
    model = LSTMLanguageModel(tiny_config(vocab))
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, vocab.sha256, extra={"name": "m", "dropout": 0.3})
    raw = torch.load(path, weights_only=True)  # loadable without pickle code execution
    assert raw["vocabulary_sha256"] == vocab.sha256 and raw["model_config"]["hidden_size"] == 12
    loaded, record = load_checkpoint(path)
    for k, v in model.state_dict().items():
        assert torch.equal(v, loaded.state_dict()[k])
    model.eval()
    x = batchify(train_ids[:80], 2)
    assert torch.equal(model(x, model.init_hidden(2))[0], loaded(x, loaded.init_hidden(2))[0])
    assert record["extra"]["name"] == "m"


def test_missing_and_corrupt_checkpoints_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=r"bad\.pt: not a readable checkpoint"):
        load_checkpoint(bad)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(ValueError, match=r"other\.pt: not a lstmscope checkpoint"):
        load_checkpoint(other)


def test_training_learns_decays_lr_and_keeps_the_best_model(corpus):
    vocab, train_ids, valid_ids = corpus
    cfg = TrainingConfig(epochs=4, lr=20.0, bptt=10, batch_size=4, eval_batch_size=4, seed=5)
    result = train("m", tiny_config(vocab, 0.0), cfg, train_ids, valid_ids, valid_ids, progress=False)
    hist = result.history
    assert len(hist) == 4
    assert hist[0]["valid_ppl"] < len(vocab) / 2  # far better than a uniform guess
    best = float("inf")
    for prev, row in zip(hist, hist[1:]):  # lr / 4 exactly after an epoch that did not improve
        best = min(best, prev["valid_loss"])
        expected = prev["lr"] if prev["valid_loss"] <= best else prev["lr"] / 4
        assert row["lr"] == expected
    assert any(r["lr"] < 20.0 for r in hist), "this corpus overfits within 4 epochs; lr must have decayed"
    assert result.valid_ppl == pytest.approx(min(r["valid_ppl"] for r in hist))
    # the returned model is the best one: evaluating it reproduces the best validation loss
    from lstmscope.training import evaluate
    assert evaluate(result.model, batchify(valid_ids, 4), 10) == pytest.approx(result.best_valid_loss, rel=1e-6)
    # the test split (here the validation tokens again) is scored with that best model, not the last epoch's
    assert hist[-1]["valid_loss"] > result.best_valid_loss  # (the last epoch is not the best one here)
    assert result.test_loss == pytest.approx(result.best_valid_loss, rel=1e-9)


def test_evaluate_is_the_mean_cross_entropy_of_each_whole_stream(corpus):
    """``evaluate`` cuts the streams into bptt pieces and carries the state across the cuts: the same as
    reading each column in one go, one token at a time, and averaging -log p of every next token."""
    from lstmscope.training import evaluate
    vocab, _, valid_ids = corpus
    torch.manual_seed(0)
    model = LSTMLanguageModel(tiny_config(vocab, 0.0)).eval()
    source = batchify(valid_ids, 4)
    nll = []
    with torch.no_grad():
        for b in range(source.size(1)):
            column = source[:, b]
            hidden = model.init_hidden(1)
            for t in range(len(column) - 1):
                logits, hidden = model(column[t:t + 1, None], hidden)
                nll.append(-torch.log_softmax(logits[0].double(), 0)[column[t + 1]].item())
    assert evaluate(model, source, 10) == pytest.approx(sum(nll) / len(nll), rel=1e-5)


class _Crash(Exception):
    pass


def _state(result):
    return {k: v.clone() for k, v in result.model.state_dict().items()}


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


# The crash comes after the save at batch 7, mid-epoch: in the first epoch (nothing but training before it)
# and in the second (after an evaluation). On CUDA this needs the trainer's per-batch re-seed of cuDNN's
# dropout state: without it, resuming after a first-epoch crash differed (benchmarks/gpu_training.py, H100).
@pytest.mark.parametrize("crash_epoch", [1, 2])
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=CUDA)])
def test_crash_and_resume_equals_uninterrupted(tmp_path, corpus, device, crash_epoch):
    vocab, train_ids, valid_ids = corpus
    mc = tiny_config(vocab, 0.3)  # dropout on: the RNG state must be restored too
    reference_resume = tmp_path / "reference.pt"
    uninterrupted = train("m", mc, CFG, train_ids, valid_ids, resume_path=reference_resume, device=device,
                          progress=False)
    reference = _state(uninterrupted)

    resume = tmp_path / "resume.pt"

    def crash(epoch, batch):
        if epoch == crash_epoch and batch == 10:
            raise _Crash()

    with pytest.raises(_Crash):
        train("m", mc, CFG, train_ids, valid_ids, resume_path=resume, device=device, progress=False,
              after_batch=crash)
    assert resume.is_file()
    result = train("m", mc, CFG, train_ids, valid_ids, resume_path=resume, device=device, progress=False)
    assert result.resumed_from == {"epoch": crash_epoch, "batch": 7}
    resumed = _state(result)
    assert resumed.keys() == reference.keys()
    for k in reference:
        assert torch.equal(resumed[k], reference[k]), k
    # the model returned is the best epoch's (here the first: the second does not improve), so the last epoch's
    # weights and the history are compared too, from the resume state both runs end with
    assert [r["valid_loss"] for r in result.history] == [r["valid_loss"] for r in uninterrupted.history]
    assert [r["train_loss"] for r in result.history] == [r["train_loss"] for r in uninterrupted.history]
    last, last_reference = (torch.load(p, weights_only=True)["model"] for p in (resume, reference_resume))
    for k in last_reference:
        assert torch.equal(last[k], last_reference[k]), k


def _crash_at_batch_8(tmp_path, corpus):
    vocab, train_ids, valid_ids = corpus
    resume = tmp_path / "resume.pt"
    with pytest.raises(_Crash):
        train("m", tiny_config(vocab, 0.3), CFG, train_ids, valid_ids, resume_path=resume, progress=False,
              after_batch=lambda e, b: (_ for _ in ()).throw(_Crash()) if b == 8 else None)
    return resume


def test_resume_state_of_another_configuration_is_ignored(tmp_path, corpus):
    vocab, train_ids, valid_ids = corpus
    resume = _crash_at_batch_8(tmp_path, corpus)  # dropout 0.3
    result = train("m", tiny_config(vocab, 0.1), CFG, train_ids, valid_ids, resume_path=resume, progress=False)
    assert result.resumed_from is None


def test_a_resume_state_of_other_data_is_not_continued(tmp_path, corpus):
    """A run interrupted on one text is not continued on another (training.train_tokens changed, another split):
    one token changed in either part starts the training afresh, with the weights of an uninterrupted run on it."""
    vocab, train_ids, valid_ids = corpus
    other_train, other_valid = train_ids.clone(), valid_ids.clone()
    other_train[100] = (other_train[100] + 1) % len(vocab)
    other_valid[-1] = (other_valid[-1] + 1) % len(vocab)
    for i, data in enumerate(((other_train, valid_ids), (train_ids, other_valid))):
        resume = _crash_at_batch_8(tmp_path, corpus)
        result = train("m", tiny_config(vocab, 0.3), CFG, *data, resume_path=resume, progress=False)
        assert result.resumed_from is None
        fresh = train("m", tiny_config(vocab, 0.3), CFG, *data, resume_path=tmp_path / f"fresh{i}.pt",
                      progress=False)
        assert all(torch.equal(a, b) for a, b in zip(_state(result).values(), _state(fresh).values()))
    resume = _crash_at_batch_8(tmp_path, corpus)  # the same data: continued
    same = train("m", tiny_config(vocab, 0.3), CFG, train_ids.clone(), valid_ids.clone(), resume_path=resume,
                 progress=False)
    assert same.resumed_from == {"epoch": 1, "batch": 7}


def test_a_resume_state_of_another_thread_count_is_not_continued(tmp_path, corpus):
    """The number of CPU threads can change a sum's last bits (torch splits long sums between threads), so a run
    interrupted with one count is not continued with another (`--cores` caps `training.threads`)."""
    vocab, train_ids, valid_ids = corpus
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        resume = _crash_at_batch_8(tmp_path, corpus)
        torch.set_num_threads(2)
        other = train("m", tiny_config(vocab, 0.3), CFG, train_ids, valid_ids, resume_path=resume, progress=False)
        assert other.resumed_from is None
        torch.set_num_threads(1)
        resume = _crash_at_batch_8(tmp_path, corpus)
        same = train("m", tiny_config(vocab, 0.3), CFG, train_ids, valid_ids, resume_path=resume, progress=False)
        assert same.resumed_from == {"epoch": 1, "batch": 7}
    finally:
        torch.set_num_threads(threads)


def test_a_resume_state_of_another_torch_version_is_not_continued(tmp_path, corpus, monkeypatch):
    """Another torch build can compute other last bits: a run interrupted under one is not continued under another
    (a venv upgraded between the two)."""
    vocab, train_ids, valid_ids = corpus
    version = torch.__version__
    monkeypatch.setattr(torch, "__version__", "2.0.0+other")
    resume = _crash_at_batch_8(tmp_path, corpus)
    monkeypatch.setattr(torch, "__version__", version)
    assert train("m", tiny_config(vocab, 0.3), CFG, train_ids, valid_ids, resume_path=resume,
                 progress=False).resumed_from is None
    resume.unlink()  # that run's own state, complete
    resume = _crash_at_batch_8(tmp_path, corpus)
    assert train("m", tiny_config(vocab, 0.3), CFG, train_ids, valid_ids, resume_path=resume,
                 progress=False).resumed_from == {"epoch": 1, "batch": 7}


@pytest.mark.parametrize("during", [1, 2], ids=["first validation", "last validation"])
def test_a_signal_during_a_validation_stops_it_and_the_rerun_validates_again(tmp_path, corpus, monkeypatch, during):
    """SIGTERM while an epoch is validated (Snakemake cancelling, a time limit with its short grace): the validation
    stops at its next batch, not minutes later, and the state after the epoch's training is saved. Before, the signal
    was acted on after the next epoch's first batch, and during the last epoch's validation not at all: the job wrote
    its model, deleted resume.pt and exited 0 for a job the scheduler had counted as failed. The rerun validates that
    epoch again and goes on, to the uninterrupted run's weights."""
    import os

    import lstmscope.training as tr

    vocab, train_ids, valid_ids = corpus
    mc = tiny_config(vocab, 0.3)
    reference = train("m", mc, CFG, train_ids, valid_ids, progress=False)
    calls, evaluate = [], tr.evaluate

    def signalled(*args, **kwargs):
        calls.append(1)
        if len(calls) == during:
            os.kill(os.getpid(), signal.SIGTERM)  # the trainer's handler turns it into a request
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(tr, "evaluate", signalled)
    resume = tmp_path / "resume.pt"
    with pytest.raises(tr.Interrupted, match=rf"^model m: SIGTERM during epoch {during}'s validation; state saved to "
                                             rf".*resume\.pt \(the validation is done again on resuming\)$"):
        train("m", mc, CFG, train_ids, valid_ids, resume_path=resume, progress=False)
    assert len(calls) == during
    monkeypatch.setattr(tr, "evaluate", evaluate)
    result = train("m", mc, CFG, train_ids, valid_ids, resume_path=resume, progress=False)
    batches = len(tr.batch_starts(batchify(train_ids, CFG.batch_size), CFG.bptt))
    assert result.resumed_from == {"epoch": during, "batch": batches}
    assert result.history == [{**r, "seconds": h["seconds"], "tokens_per_s": h["tokens_per_s"],
                               "eval_seconds": h["eval_seconds"]} for r, h in zip(reference.history, result.history)]
    resumed, want = _state(result), _state(reference)
    for k in want:
        assert torch.equal(resumed[k], want[k]), k


def test_a_resume_state_is_continued_whatever_the_save_interval(tmp_path, corpus):
    """save_every_batches decides only when a resume file is written (the rule leaves it out of its params): a run
    interrupted with one interval and rerun with another continues, to the uninterrupted run's weights."""
    from dataclasses import replace

    vocab, train_ids, valid_ids = corpus
    reference = _state(train("m", tiny_config(vocab, 0.3), CFG, train_ids, valid_ids, progress=False))
    resume = _crash_at_batch_8(tmp_path, corpus)
    result = train("m", tiny_config(vocab, 0.3), replace(CFG, save_every_batches=5), train_ids, valid_ids,
                   resume_path=resume, progress=False)
    assert result.resumed_from == {"epoch": 1, "batch": 7}
    resumed = _state(result)
    for k in reference:
        assert torch.equal(resumed[k], reference[k]), k


def test_a_damaged_resume_state_is_not_continued(tmp_path, corpus):
    """torch.load reads a resume state damaged inside (its size kept) as other weights; its checksum stops that, and
    the training starts afresh, to the uninterrupted run's weights."""
    vocab, train_ids, valid_ids = corpus
    mc = tiny_config(vocab, 0.3)
    reference = _state(train("m", mc, CFG, train_ids, valid_ids, progress=False))
    resume = _crash_at_batch_8(tmp_path, corpus)  # of the same model
    damage_largest_part(resume)
    result = train("m", mc, CFG, train_ids, valid_ids, resume_path=resume, progress=False)
    assert result.resumed_from is None
    resumed = _state(result)
    assert all(torch.equal(resumed[k], reference[k]) for k in reference)


def test_non_finite_loss_names_model_epoch_and_batch(corpus):
    vocab, train_ids, valid_ids = corpus
    cfg = TrainingConfig(epochs=1, lr=1e38, bptt=10, batch_size=4, eval_batch_size=4, seed=5)
    with pytest.raises(TrainingError, match=r"^model blowup: loss is (nan|inf) at epoch 1, batch \d+ of \d+"):
        train("blowup", tiny_config(vocab, 0.0), cfg, train_ids, valid_ids, progress=False)


SCRIPT = textwrap.dedent("""
    import sys, time, torch
    import lstmscope
    from lstmscope.model import ModelConfig, save_checkpoint
    from lstmscope.training import TrainingConfig, train
    from lstmscope.vocabulary import build_vocabulary, read_tokens
    data, resume, out, slow = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    crash_at = int(sys.argv[5]) if len(sys.argv) > 5 else None  # exit (code 3) after this batch of epoch 1
    torch.set_num_threads(1)
    tr = read_tokens(data + "/train.txt")[:3000]
    va = read_tokens(data + "/valid.txt")[:800]
    vocab = build_vocabulary([tr, va], max_size=500)
    mc = ModelConfig(len(vocab), 8, 12, 2, 0.3)
    cfg = TrainingConfig(epochs=2, lr=20.0, bptt=10, batch_size=4, eval_batch_size=4, save_every_batches=7, seed=5)
    def after_batch(epoch, batch):
        if epoch == 1 and batch == crash_at:
            sys.exit(3)
        time.sleep(slow)
    r = train("m", mc, cfg, torch.from_numpy(vocab.encode(tr)), torch.from_numpy(vocab.encode(va)),
              resume_path=resume, progress=False, after_batch=after_batch)
    save_checkpoint(out, r.model, vocab.sha256)
    print("library", lstmscope.__file__)
    print("resumed_from", r.resumed_from)
""")


def _run_script(tmp_path, resume, out, slow):
    script = tmp_path / "train_script.py"
    script.write_text(SCRIPT)
    return subprocess.Popen([sys.executable, str(script), str(DATA), str(resume), str(out), str(slow)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_killed_process_resumes_to_identical_weights(tmp_path, corpus, sig):
    vocab, train_ids, valid_ids = corpus
    reference = _state(train("m", tiny_config(vocab, 0.3), CFG, train_ids, valid_ids, progress=False))
    resume, out = tmp_path / "resume.pt", tmp_path / "model.pt"
    proc = _run_script(tmp_path, resume, out, slow=0.05)
    deadline = time.monotonic() + 120
    while not resume.exists():  # wait for the first saved state, then kill
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "no saved training state within 120 s (the job hangs?)"
        time.sleep(0.05)
    time.sleep(0.2)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    if sig == signal.SIGTERM:
        assert "Interrupted: model m: SIGTERM at epoch" in err  # saved its state on the way out
    assert not out.exists()
    proc = _run_script(tmp_path, resume, out, slow=0.0)
    stdout, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "resumed_from {'epoch'" in stdout
    loaded, _ = load_checkpoint(out)
    for k, v in reference.items():
        assert torch.equal(loaded.state_dict()[k], v), k


# The same training as a pipeline job runs it: inside job_log, which writes the job's log (argv[6]).
JOB_SCRIPT = ("import sys\nfrom lstmscope.joblog import job_log\nwith job_log(sys.argv[6], 'train_lstm'):\n"
              + textwrap.indent(SCRIPT, "    "))


@pytest.mark.parametrize("sig,status", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "Ctrl-C"])
def test_a_training_job_stopped_by_a_signal_saves_and_says_so_in_one_line(tmp_path, sig, status):
    """Snakemake cancelling the job, or a scheduler's time limit, sends SIGTERM: the job saves its state and stops
    with the signal's exit status and one line saying where the state is, no traceback in its log."""
    resume, out, log = tmp_path / "resume.pt", tmp_path / "model.pt", tmp_path / "train.log"
    script = tmp_path / "job_script.py"
    script.write_text(JOB_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(DATA), str(resume), str(out), "0.05", "-1", str(log)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not resume.exists():
        assert proc.poll() is None, proc.stderr.read()
        assert time.monotonic() < deadline, "no saved training state within 120 s (the job hangs?)"
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == status, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"lstmscope train_lstm: model m: {sig.name} at epoch "), err
    assert lines[0].endswith(f"state saved to {resume}"), err
    text = log.read_text()
    assert "train_lstm: stopped after" in text and "Traceback" not in text, text
    assert resume.exists() and not out.exists()


@pytest.mark.parametrize("split", ["train", "valid"])
def test_a_training_job_names_the_file_and_setting_a_split_is_too_short_for(tmp_path, split):
    """A split of one's own (the config's checks know only WikiText-2's lengths) too short to make two rows of its
    batch: one line naming the file, the batch setting and the tokens taken, before any training; nothing written."""
    from lstmscope.training_job import run_training_job
    from lstmscope.vocabulary import build_vocabulary

    paths = {s: tmp_path / f"{s}.txt" for s in ("train", "valid")}
    for s, path in paths.items():
        path.write_text((DATA / f"{s}.txt").read_text(encoding="utf-8")[:3000] if s != split else "a few words\n",
                        encoding="utf-8")
    build_vocabulary([read_tokens(p) for p in paths.values()]).save(tmp_path / "vocabulary.json")
    training = {"epochs": 1, "lr": 20.0, "lr_decay": 4.0, "clip": 0.25, "bptt": 10, "batch_size": 4,
                "eval_batch_size": 5, "save_every_batches": 100, "threads": 1, "train_tokens": None, "valid_tokens": None}
    key, batch = ("batch_size", 4) if split == "train" else ("eval_batch_size", 5)
    threads = torch.get_num_threads()
    try:
        with pytest.raises(TrainingError, match=rf"^{paths[split]}: 4 tokens are too few for training.{key} {batch}; "
                                                rf"at least {2 * batch} \(training.{split}_tokens: null, the whole file\)$"):
            run_training_job({"name": "d0.0_r0", "dropout": 0.0, "seed": 1, "replicate": 0},
                             {"embedding_size": 8, "hidden_size": 8, "layers": 2}, training, "cpu", 0, 1,
                             {s: str(p) for s, p in paths.items()}, str(tmp_path / "vocabulary.json"),
                             str(tmp_path / "model.pt"), str(tmp_path / "metrics.json"), str(tmp_path / "resume.pt"))
    finally:
        torch.set_num_threads(threads)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.txt", "valid.txt", "vocabulary.json"]


def test_the_training_code_is_every_module_that_decides_the_weights():
    """The modules the trainer and the model import are in ``TRAINING_CODE`` (whose digest the resume state
    records), but for writing files (atomic) and computing that digest (provenance); the next test edits one."""
    import ast

    from lstmscope.training import TRAINING_CODE
    library = Path(__file__).resolve().parents[1] / "workflow" / "scripts" / "lstmscope"
    imported = set()
    for module in TRAINING_CODE:
        tree = ast.parse((library / f"{module}.py").read_text())
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}
    assert imported - {"atomic", "provenance"} <= set(TRAINING_CODE), imported


@pytest.mark.parametrize("edited", [None, "model.py", "training_job.py"])
def test_a_resume_file_of_other_training_code_is_not_continued(tmp_path, edited, wikitext2):
    import os
    import shutil

    library = tmp_path / "lib"
    shutil.copytree(Path(__file__).resolve().parents[1] / "workflow" / "scripts" / "lstmscope", library / "lstmscope")
    script, resume, out = tmp_path / "train_script.py", tmp_path / "resume.pt", tmp_path / "model.pt"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(library)}  # the copy, not the checkout

    def run(*crash_at: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), str(DATA), str(resume), str(out), "0", *crash_at],
                              env=env, capture_output=True, text=True, timeout=300)

    assert run("10").returncode == 3 and resume.is_file()
    if edited:  # a change of the code between the crash and the rerun (a comment is enough)
        with open(library / "lstmscope" / edited, "a") as f:
            f.write("# edited\n")
    r = run()
    assert r.returncode == 0, r.stderr
    assert f"library {library / 'lstmscope' / '__init__.py'}" in r.stdout
    continued = edited in (None, "training_job.py")  # the job's wrapper does not compute the weights
    assert ("resumed_from {'epoch': 1, 'batch': 7}" in r.stdout) == continued, r.stdout
    assert ("resume state belongs to other settings, data, training code" in r.stderr) == (not continued)


KERNELS_SCRIPT = textwrap.dedent("""
    import sys, torch
    from lstmscope.model import ModelConfig, state_dict_digest
    from lstmscope.training import TrainingConfig, train
    from lstmscope.training_job import configure_torch
    from lstmscope.vocabulary import build_vocabulary, read_tokens
    kernels = configure_torch(1)  # what the training job does first
    tr = read_tokens(sys.argv[1] + "/train.txt")[:3000]
    va = read_tokens(sys.argv[1] + "/valid.txt")[:800]
    vocab = build_vocabulary([tr, va], max_size=500)
    cfg = TrainingConfig(epochs=1, lr=20.0, bptt=10, batch_size=4, eval_batch_size=4, seed=5)
    r = train("m", ModelConfig(len(vocab), 8, 12, 2, 0.3), cfg, torch.from_numpy(vocab.encode(tr)),
              torch.from_numpy(vocab.encode(va)), progress=False)
    print(kernels, state_dict_digest(r.model))
""")


def _train_with(tmp_path, **env) -> tuple[str, str, str]:
    """(CPU kernels in effect, weight digest, standard error) of a training run in a fresh process whose
    environment sets none of the pinned variables but ``env``."""
    import os

    script = tmp_path / "kernels.py"
    script.write_text(KERNELS_SCRIPT)
    clean = {k: v for k, v in os.environ.items() if k not in PORTABLE_KERNELS}
    r = subprocess.run([sys.executable, str(script), str(DATA)], env={**clean, **env}, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    kernels, digest = r.stdout.strip().rsplit(" ", 1)
    return kernels, digest, r.stderr


def test_a_training_job_computes_with_the_kernels_of_any_avx2_cpu(tmp_path, wikitext2):
    """From the same seed, an AVX-512 machine and an AVX2 one trained different models (torch's AVX-512
    kernels round differently). The job pins torch's AVX2 kernels and MKL's COMPATIBLE branch: here, whatever
    this CPU offers, it trains the weights of a process told to use torch's and oneDNN's AVX2 kernels and
    MKL's COMPATIBLE branch, which is what a CPU without AVX-512 does then; a setting of the environment wins.
    (oneDNN, which ran the LSTM with AVX-512 kernels of its own choice, is off: lstmscope.model.)"""
    avx2 = _train_with(tmp_path, ATEN_CPU_CAPABILITY="avx2", MKL_CBWR="COMPATIBLE", ONEDNN_MAX_CPU_ISA="AVX2")
    if not avx2[0].startswith("AVX2"):
        skip_or_fail(f"this CPU has no AVX2 kernels (told to use them, torch uses {avx2[0]})")
    pinned = _train_with(tmp_path)
    assert pinned[:2] == avx2[:2]
    default = _train_with(tmp_path, ATEN_CPU_CAPABILITY="default")
    assert default[0].startswith(("DEFAULT", "NO AVX"))  # (torch 2.2 calls its plain kernels NO AVX)
    assert default[1] != pinned[1], "other kernels, other weights: the pin is what makes them equal"


VENDOR_SHIM = """#include <stdio.h>
int mkl_serv_intel_cpu_true(void) {
    static int told;
    if (!told) { told = 1; fputs("vendor shim asked\\n", stderr); }
    return %d;
}
"""


def test_mkl_computes_the_same_numbers_whichever_vendor_made_the_cpu(tmp_path, wikitext2):
    """MKL runs the branch ``MKL_CBWR`` names on Intel processors only and takes its own elsewhere: told AVX2,
    an AMD EPYC trained the default d0.0_r0 to test perplexity 439.6 where Intel machines trained it to 421.6.
    Pinned to COMPATIBLE, the branch MKL keeps on every processor, the weights do not depend on the vendor.
    A shim preloaded over MKL's vendor check makes MKL see an Intel processor, or another vendor's, on this
    one machine; it reports that MKL asked it."""
    import shutil

    from lstmscope.kernels import cpu_has_avx2
    from lstmscope.model import mkl_branch

    cc = shutil.which("cc") or shutil.which("gcc")
    if not (cc and cpu_has_avx2() and mkl_branch() and sys.platform.startswith("linux")):
        skip_or_fail("needs Linux on an x86-64 CPU with AVX2, torch with MKL, and a C compiler (cc)")
    shims = {}
    for vendor, intel in (("Intel", 1), ("other", 0)):
        source = tmp_path / f"{vendor}.c"
        source.write_text(VENDOR_SHIM % intel)
        shims[vendor] = tmp_path / f"lib{vendor}.so"
        subprocess.run([cc, "-shared", "-fPIC", "-o", str(shims[vendor]), str(source)], check=True, timeout=60)

    def train_seeing(vendor, **env):
        kernels, digest, err = _train_with(tmp_path, LD_PRELOAD=str(shims[vendor]), **env)
        assert "vendor shim asked" in err, f"MKL did not ask the {vendor} shim: {err[-2000:]}"
        return kernels, digest

    pinned = {vendor: train_seeing(vendor) for vendor in shims}
    assert pinned["Intel"][0] == pinned["other"][0] == "AVX2, MKL COMPATIBLE"
    assert pinned["Intel"][1] == pinned["other"][1]
    told_avx2 = {vendor: train_seeing(vendor, MKL_CBWR="AVX2") for vendor in shims}
    assert (told_avx2["Intel"][0], told_avx2["other"][0]) == ("AVX2, MKL AVX2", "AVX2, MKL AUTO")
    assert told_avx2["Intel"][1] != told_avx2["other"][1], "told AVX2, MKL computes by the vendor: the pin matters"


def test_onednn_is_off_unless_the_environment_keeps_it(tmp_path):
    """oneDNN picks its own kernels by the processor: off, the LSTM runs on the pinned ones; LSTMSCOPE_ONEDNN=1
    keeps it, and the provenance says so."""
    probe = "import lstmscope.model as m, torch; print(torch.backends.mkldnn.enabled, m.cpu_kernels())"
    import os

    for value, expected in ((None, "False"), ("1", "True")):
        env = {k: v for k, v in os.environ.items() if k != "LSTMSCOPE_ONEDNN"}
        if value:
            env["LSTMSCOPE_ONEDNN"] = value
        r = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        enabled, kernels = r.stdout.strip().split(" ", 1)
        assert enabled == expected
        assert kernels.endswith(", oneDNN") == (value == "1" and torch.backends.mkldnn.is_available()), kernels


def _textbook_training(mc: ModelConfig, cfg: TrainingConfig, train_ids, valid_ids) -> tuple[dict, list[float]]:
    """pytorch/examples word_language_model's main.py, written out: plain SGD by hand, hidden state carried across
    batches and detached, gradients clipped, the learning rate divided by 4 after an epoch that does not lower the
    validation loss. Returns the last epoch's weights and the validation loss of each epoch."""
    torch.manual_seed(cfg.seed)
    model = LSTMLanguageModel(mc)
    train_data, valid_data = batchify(train_ids, cfg.batch_size), batchify(valid_ids, cfg.eval_batch_size)
    lr, best, valid_losses = cfg.lr, None, []
    for _ in range(cfg.epochs):
        model.train()
        hidden = model.init_hidden(cfg.batch_size)
        for i in range(0, train_data.size(0) - 1, cfg.bptt):
            data, targets = get_batch(train_data, i, cfg.bptt)
            hidden = tuple(h.detach() for h in hidden)
            model.zero_grad()
            output, hidden = model(data, hidden)
            loss = torch.nn.functional.nll_loss(torch.log_softmax(output, dim=1), targets)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip)
            for p in model.parameters():
                p.data.add_(p.grad, alpha=-lr)
        model.eval()
        total, hidden = 0.0, model.init_hidden(cfg.eval_batch_size)
        with torch.no_grad():
            for i in range(0, valid_data.size(0) - 1, cfg.bptt):
                data, targets = get_batch(valid_data, i, cfg.bptt)
                output, hidden = model(data, hidden)
                total += len(data) * torch.nn.functional.nll_loss(torch.log_softmax(output, dim=1), targets).item()
        valid_losses.append(total / (valid_data.size(0) - 1))
        if best is None or valid_losses[-1] < best:
            best = valid_losses[-1]
        else:
            lr /= 4.0
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, valid_losses


def test_training_follows_the_textbook_recipe(tmp_path, corpus):
    """The trainer (fused loss, foreach SGD, resume bookkeeping) computes what the textbook loop computes, epoch
    after epoch: dropout on in every epoch, the state carried across batches, the decayed learning rate applied."""
    vocab, train_ids, valid_ids = corpus
    mc, cfg = tiny_config(vocab, 0.3), dataclasses.replace(CFG, epochs=3)
    book, book_valid = _textbook_training(mc, cfg, train_ids, valid_ids)
    assert book_valid[1] > book_valid[0]  # 5.187 > 5.077: the second epoch does not improve, the third trains at lr 5
    result = train("m", mc, cfg, train_ids, valid_ids, resume_path=tmp_path / "resume.pt", progress=False)
    assert [r["lr"] for r in result.history] == [20.0, 20.0, 5.0]
    # the two differ only in rounding (fused loss, foreach clipping and SGD): 1e-6 of the weights after 225 steps on
    # an AVX2 machine; the tolerances leave room for other CPUs, far below what a changed recipe moves
    assert [r["valid_loss"] for r in result.history] == pytest.approx(book_valid, rel=1e-4)
    ours = torch.load(tmp_path / "resume.pt", weights_only=True)["model"]  # the last epoch's weights
    for k, v in book.items():
        torch.testing.assert_close(ours[k], v, rtol=1e-3, atol=1e-4, msg=k)


def test_a_resume_state_given_for_a_checkpoint_is_named_as_one(tmp_path, corpus, capsys):
    """resume.pt lies beside model.pt while a training is unfinished; given to a command for the checkpoint it was
    "not a lstmscope checkpoint (format is not …)". The command names it and where the checkpoint will be."""
    from lstmscope.dump_cli import main as dump_main

    resume = _crash_at_batch_8(tmp_path, corpus)
    text = tmp_path / "t.txt"
    text.write_text("the film .\n", encoding="utf-8")
    out = tmp_path / "x.h5"
    assert dump_main([str(resume), str(text), "--vocabulary", str(tmp_path / "v.json"), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert err == (f"lstmscope-dump: error: {resume}: a training's resume state, not a checkpoint; give the model.pt "
                   "its training writes when it ends (results/models/<model>/model.pt)\n") and not out.exists()
