"""One test evaluation job of the pipeline: the perplexity of a trained checkpoint on the test split.

A job of its own, after the training: ``training.test_tokens`` decides only this number, so changing it
scores the kept checkpoints again instead of training them again.
"""
from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Any

from .atomic import write_text
from .model import check_vocabulary, choose_device, gpu_name, load_checkpoint
from .provenance import provenance, sha256_file
from .training import batchify, evaluate
from .training_job import check_threads, configure_torch, load_split_ids, too_few_tokens
from .vocabulary import Vocabulary

log = logging.getLogger(__name__)


class EvaluationError(ValueError):
    """A checkpoint that cannot be scored with the given vocabulary or settings (the message names the file)."""


def run_test_job(model_name: str, checkpoint_path: str | os.PathLike, vocabulary_path: str | os.PathLike,
                 split_path: str | os.PathLike, test_tokens: int | None, eval_batch_size: int, bptt: int,
                 device: str, gpus: int, threads: int, output_path: str | os.PathLike,
                 wanted_threads: int | None = None) -> dict[str, Any]:
    """Score the checkpoint on the first ``test_tokens`` tokens of the test split (all when None), as the
    validation is scored during training (pytorch/examples' evaluation: ``eval_batch_size`` columns, the state
    carried across windows of ``bptt`` tokens); write ``output_path`` (JSON) and return its record.
    ``wanted_threads``: ``training.threads``, which a CPU job must have been given (:func:`check_threads`)."""
    kernels = configure_torch(threads)
    dev = choose_device(device, gpus, "training.device")
    check_threads(dev, threads, wanted_threads)
    model, record = load_checkpoint(checkpoint_path)
    vocab = Vocabulary.load(vocabulary_path)
    check_vocabulary(checkpoint_path, record, vocab.sha256, vocabulary_path, EvaluationError)
    extra = dict(record.get("extra", {}))
    if extra.get("name", model_name) != model_name:
        raise EvaluationError(f"{checkpoint_path}: holds model {extra['name']!r}, not {model_name!r}")
    ids = load_split_ids(split_path, vocab, test_tokens)
    message = too_few_tokens(split_path, ids, "eval_batch_size", eval_batch_size)
    if message:
        raise EvaluationError(message)
    log.info("model %s: test perplexity on %d tokens of %s, %s, %d threads", model_name, len(ids), split_path, dev,
             threads)
    t0 = time.monotonic()
    batches = batchify(ids, eval_batch_size)  # eval_batch_size columns, the remainder left out
    loss = evaluate(model.to(dev), batches.to(dev), bptt, progress=f"{model_name} test")
    if not math.isfinite(loss):
        raise EvaluationError(f"{checkpoint_path}: the test loss is {loss}; the model cannot be scored")
    result = {
        "model": model_name,
        "dropout": extra.get("dropout"),
        "replicate": extra.get("replicate"),
        "seed": extra.get("seed"),
        "test_loss": loss,
        "test_ppl": math.exp(loss),
        "tokens": len(ids),  # read; predicted: all but the remainder and each column's first token
        "scored_tokens": (batches.size(0) - 1) * batches.size(1),
        "seconds": time.monotonic() - t0,
        "provenance": provenance(
            model_config=dict(record["model_config"]), checkpoint=str(checkpoint_path),
            checkpoint_sha256=sha256_file(checkpoint_path), vocabulary_sha256=vocab.sha256,
            test_tokens=test_tokens, eval_batch_size=int(eval_batch_size), bptt=int(bptt), device=str(dev), gpu=gpu_name(dev),
            threads=int(threads), cpu_kernels=kernels, seed=extra.get("seed"),
            data_sha256={"test": sha256_file(split_path)},
        ),
    }
    write_text(output_path, json.dumps(result, indent=2))
    log.info("model %s: test ppl %.2f (%.1f s)", model_name, result["test_ppl"], result["seconds"])
    return result
