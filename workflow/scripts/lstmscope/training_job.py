"""One training job of the pipeline: load data, train (resumably), write checkpoint and metrics.

The test perplexity is a job of its own (:mod:`lstmscope.evaluation_job`): the training reads only the training and
validation splits."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Mapping

import torch

from .atomic import write_text
from .model import ModelConfig, choose_device, cpu_kernels, gpu_name, save_checkpoint
from .provenance import provenance, sha256_file
from .training import TrainingConfig, TrainingError, train
from .vocabulary import Vocabulary, first_tokens

log = logging.getLogger(__name__)


def configure_torch(threads: int) -> str:
    """What a training job sets before its first tensor operation: its thread count and deterministic
    algorithms; returns the CPU kernels in effect (pinned when ``lstmscope`` was imported).

    On CUDA, cuBLAS gives the same numbers run after run only with a fixed workspace size, which it
    reads from ``CUBLAS_WORKSPACE_CONFIG`` when it starts; set here unless the environment sets it.
    """
    kernels = cpu_kernels()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.set_num_threads(max(1, int(threads)))
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    return kernels


class ThreadsError(RuntimeError):
    """A CPU job given fewer threads than ``training.threads`` asks for (the message says what to change)."""


def check_threads(device: torch.device, threads: int, wanted: int | None) -> None:
    """On the CPU a training or test job computes with the ``training.threads`` it is configured with, or not at all:
    the thread count can change the last bits of a sum, so with fewer (``snakemake --cores`` caps a job's threads)
    its numbers would not be the configuration's, and a later run on more cores would keep them. On a GPU the
    CPU threads do not compute the numbers."""
    if device.type == "cpu" and wanted is not None and int(threads) < int(wanted):
        raise ThreadsError(f"training.threads is {wanted} but this job got {threads} (--cores {threads}?); on the CPU "
                           "another thread count can change the numbers' last bits, so it does not run with fewer: "
                           f"give --cores {wanted} or more, or set training.threads: {threads}")


def load_split_ids(path: str | os.PathLike, vocab: Vocabulary, tokens: int | None) -> torch.Tensor:
    """The first ``tokens`` token ids of a split (all when None)."""
    return torch.from_numpy(vocab.encode(first_tokens(path, tokens)))


def too_few_tokens(path: str | os.PathLike, ids: torch.Tensor, key: str, batch: int) -> str | None:
    """Where a split's tokens cannot make two rows of its batch (what ``batchify`` needs): the error's line, naming
    the file and the setting ``training.<key>``; else None."""
    if len(ids) >= 2 * batch:
        return None
    return f"{path}: {len(ids)} tokens are too few for training.{key} {batch}; at least {2 * batch}"


def run_training_job(model: Mapping[str, Any], architecture: Mapping[str, Any], training: Mapping[str, Any],
                     device: str, gpus: int, threads: int, split_paths: Mapping[str, str],
                     vocabulary_path: str, checkpoint_path: str, metrics_path: str,
                     resume_path: str | None) -> dict[str, Any]:
    cpu_kernels = configure_torch(threads)
    dev = choose_device(device, gpus, "training.device")
    check_threads(dev, threads, training.get("threads"))
    vocab = Vocabulary.load(vocabulary_path)
    ids = {s: load_split_ids(split_paths[s], vocab, training.get(f"{s}_tokens")) for s in ("train", "valid")}
    for split, key in (("train", "batch_size"), ("valid", "eval_batch_size")):
        message = too_few_tokens(split_paths[split], ids[split], key, int(training[key]))
        if message:
            taken = training.get(f"{split}_tokens")
            raise TrainingError(f"{message} (training.{split}_tokens: "
                                f"{'null, the whole file' if taken is None else taken})")
    mc = ModelConfig(vocab_size=len(vocab), embedding_size=int(architecture["embedding_size"]),
                     hidden_size=int(architecture["hidden_size"]), layers=int(architecture["layers"]),
                     dropout=float(model["dropout"]))
    tc = TrainingConfig(epochs=int(training["epochs"]), lr=float(training["lr"]), lr_decay=float(training["lr_decay"]),
                        clip=float(training["clip"]), bptt=int(training["bptt"]), batch_size=int(training["batch_size"]),
                        eval_batch_size=int(training["eval_batch_size"]),
                        save_every_batches=int(training["save_every_batches"]), seed=int(model["seed"]))
    log.info("model %s: %s on %s, %d threads; %d/%d train/valid tokens", model["name"], mc, dev, threads,
             len(ids["train"]), len(ids["valid"]))
    result = train(model["name"], mc, tc, ids["train"], ids["valid"], resume_path=resume_path, device=dev)
    best_epoch = min(result.history, key=lambda r: r["valid_loss"])["epoch"]
    save_checkpoint(checkpoint_path, result.model, vocab.sha256,
                    extra={"name": model["name"], "dropout": float(model["dropout"]), "seed": int(model["seed"]),
                           "replicate": int(model["replicate"]), "best_epoch": int(best_epoch)})
    record = {
        "model": model["name"],
        "dropout": float(model["dropout"]),
        "replicate": int(model["replicate"]),
        "seed": int(model["seed"]),
        "epochs": result.history,
        "best_epoch": best_epoch,
        "valid_ppl": result.valid_ppl,
        "training_seconds": sum(r["seconds"] + r["eval_seconds"] for r in result.history),
        "resumed_from": result.resumed_from,
        "provenance": provenance(
            model_config=mc.__dict__, training=dict(training), device=str(dev), gpu=gpu_name(dev),
            threads=int(threads),
            cpu_kernels=cpu_kernels,
            seed=int(model["seed"]), vocabulary_sha256=vocab.sha256,
            checkpoint_sha256=sha256_file(checkpoint_path),
            data_sha256={s: sha256_file(p) for s, p in split_paths.items()},
        ),
    }
    write_text(metrics_path, json.dumps(record, indent=2, allow_nan=True))
    if resume_path and Path(resume_path).exists():
        Path(resume_path).unlink()  # the finished checkpoint supersedes it
    log.info("model %s: valid ppl %.2f (best epoch %d)", model["name"], result.valid_ppl, best_epoch)
    return record
