"""The test evaluation job (rule test_perplexity): a written checkpoint scored on the test split, as the
training would have scored its best model in memory; bad input is one error naming the file."""
from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import WIKITEXT2 as DATA
from lstmscope.evaluation_job import EvaluationError, run_test_job
from lstmscope.model import ModelConfig, save_checkpoint
from lstmscope.training import TrainingConfig, batchify, evaluate, train
from lstmscope.vocabulary import build_vocabulary, read_tokens

TEST_TOKENS = 700


@pytest.fixture(scope="module")
def trained(wikitext2, tmp_path_factory):
    """A tiny model trained on real text, its checkpoint and vocabulary written as the pipeline writes them, and
    the test loss ``train`` computed for its best model in memory on the first TEST_TOKENS test tokens."""
    folder = tmp_path_factory.mktemp("scored")
    train_tokens = read_tokens(DATA / "train.txt")[:3000]
    valid_tokens = read_tokens(DATA / "valid.txt")[:800]
    vocab = build_vocabulary([train_tokens, valid_tokens], max_size=500)
    test_ids = torch.from_numpy(vocab.encode(read_tokens(DATA / "test.txt")[:TEST_TOKENS]))
    torch.set_num_threads(1)
    cfg = TrainingConfig(epochs=2, lr=20.0, bptt=10, batch_size=4, eval_batch_size=4, seed=3)
    mc = ModelConfig(vocab_size=len(vocab), embedding_size=8, hidden_size=12, layers=2, dropout=0.2)
    result = train("d0.2_r0", mc, cfg, torch.from_numpy(vocab.encode(train_tokens)),
                   torch.from_numpy(vocab.encode(valid_tokens)), test_ids, progress=False)
    checkpoint, vocabulary = folder / "model.pt", folder / "vocabulary.json"
    save_checkpoint(checkpoint, result.model, vocab.sha256, extra={"name": "d0.2_r0", "dropout": 0.2, "seed": 3,
                                                                  "replicate": 0, "best_epoch": 1})
    vocab.save(vocabulary)
    return checkpoint, vocabulary, result, vocab


def score(trained, out, **changes):
    checkpoint, vocabulary, _, _ = trained
    args = dict(model_name="d0.2_r0", checkpoint_path=checkpoint, vocabulary_path=vocabulary,
                split_path=DATA / "test.txt", test_tokens=TEST_TOKENS, eval_batch_size=4, bptt=10, device="cpu",
                gpus=0, threads=1, output_path=out)
    return run_test_job(**{**args, **changes})


def test_the_written_checkpoint_scores_what_the_training_scored_in_memory(trained, tmp_path, capfd):
    """The training no longer scores the test split itself; the job that does, from the checkpoint on disk, gives
    the number the training computed for its best model (same tokens, batching, windows, threads). It shows its
    progress in the job's log (stderr): at the thesis's scale on a CPU it runs for minutes."""
    checkpoint, _, result, _ = trained
    record = score(trained, tmp_path / "test.json")
    batches = -(-(TEST_TOKENS // 4 - 1) // 10)  # windows of bptt 10 over each column's tokens but the last
    err = capfd.readouterr().err
    assert f"d0.2_r0 test: 100%" in err and f"| {batches}/{batches} [" in err, err
    assert json.loads((tmp_path / "test.json").read_text()) == json.loads(json.dumps(record))
    assert record["test_loss"] == result.test_loss and record["test_ppl"] == pytest.approx(result.test_ppl, rel=1e-15)
    assert record["tokens"] == TEST_TOKENS and record["model"] == "d0.2_r0" and record["seed"] == 3
    assert record["scored_tokens"] == (TEST_TOKENS // 4 - 1) * 4  # 4 columns, each one's first token unpredicted
    prov = record["provenance"]
    assert prov["test_tokens"] == TEST_TOKENS and prov["eval_batch_size"] == 4 and prov["bptt"] == 10
    assert len(prov["checkpoint_sha256"]) == 64 and prov["data_sha256"]["test"] and prov["lstmscope_version"]


def test_the_whole_split_and_other_batching_are_scored_as_asked(trained, tmp_path):
    """``test_tokens: null`` is the whole split; the batching changes the number as pytorch/examples' evaluation
    does (each column's first token is never predicted), and the job computes exactly that."""
    _, _, result, vocab = trained
    whole = score(trained, tmp_path / "whole.json", test_tokens=None)
    all_ids = torch.from_numpy(vocab.encode(read_tokens(DATA / "test.txt")))
    assert whole["tokens"] == len(all_ids) > 200_000 and whole["provenance"]["test_tokens"] is None
    wide = score(trained, tmp_path / "wide.json", eval_batch_size=7, bptt=13)
    assert wide["scored_tokens"] == (TEST_TOKENS // 7 - 1) * 7 == 693  # the remainder of 700 // 7 is 0
    ids = all_ids[:TEST_TOKENS]
    assert wide["test_loss"] == pytest.approx(evaluate(result.model, batchify(ids, 7), 13), rel=1e-12)
    assert wide["test_loss"] != result.test_loss and math.isfinite(whole["test_loss"])


def test_bad_input_is_one_error_naming_the_file_and_nothing_is_written(trained, tmp_path):
    checkpoint, vocabulary, _, vocab = trained
    out = tmp_path / "test.json"
    with pytest.raises(FileNotFoundError, match=rf"^{tmp_path / 'absent.pt'}: checkpoint not found$"):
        score(trained, out, checkpoint_path=tmp_path / "absent.pt")
    other = tmp_path / "other.json"
    build_vocabulary([["a", "b", "c"]]).save(other)
    with pytest.raises(EvaluationError, match=rf"^{checkpoint}: trained with another vocabulary than {other} "):
        score(trained, out, vocabulary_path=other)
    with pytest.raises(EvaluationError, match=rf"^{checkpoint}: holds model 'd0.2_r0', not 'd0.5_r0'$"):
        score(trained, out, model_name="d0.5_r0")
    with pytest.raises(EvaluationError, match=r"test.txt: 5 tokens are too few for training.eval_batch_size 4; "
                                              r"at least 8$"):
        score(trained, out, test_tokens=5)
    assert not out.exists() and list(tmp_path.iterdir()) == [other]


def test_a_cpu_job_given_fewer_threads_than_configured_refuses_to_run(trained, tmp_path):
    """``snakemake --cores 1`` gives a job of ``training.threads: 2`` one thread; on the CPU that can change the
    numbers' last bits, and the file would claim the config's threads. The job stops at once, saying what to change;
    on a GPU the CPU threads do not compute the numbers and it runs."""
    from lstmscope.training_job import ThreadsError, check_threads
    out = tmp_path / "test.json"
    with pytest.raises(ThreadsError) as err:
        score(trained, out, threads=1, wanted_threads=2)
    assert str(err.value) == ("training.threads is 2 but this job got 1 (--cores 1?); on the CPU another thread count "
                              "can change the numbers' last bits, so it does not run with fewer: give --cores 2 or "
                              "more, or set training.threads: 1")
    assert not out.exists()
    check_threads(torch.device("cuda"), 1, 4)  # a GPU job: runs
    check_threads(torch.device("cpu"), 2, 2)
    check_threads(torch.device("cpu"), 1, None)
    assert score(trained, out, threads=1, wanted_threads=1)["tokens"] == TEST_TOKENS
