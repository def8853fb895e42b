"""Training with the pytorch/examples word_language_model recipe, resumable and deterministic.

Recipe: plain SGD (lr 20), gradient-norm clipping 0.25, truncated BPTT of 35
steps over 20 parallel streams, hidden state carried across batches within an
epoch, lr divided by 4 whenever validation perplexity does not improve, and the
best model (by validation loss) kept.

Resumability: every ``save_every_batches`` batches and after every epoch, the
whole training state (weights, optimizer, lr, RNG states, carried hidden state,
position, best model so far, history) is written atomically to a resume file. A
rerun with the same parameters continues from it, and on the CPU the final
weights are bit-identical to an uninterrupted run.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .atomic import atomic_path
from .loss import linear_cross_entropy
from .model import LSTMLanguageModel, ModelConfig, cpu_kernels, damaged_member
from .provenance import library_digest

log = logging.getLogger(__name__)

RESUME_FORMAT = "lstmscope-resume-1"


class TrainingError(RuntimeError):
    """Training cannot go on (non-finite loss, bad data); the message names model, epoch and batch."""


class Interrupted(RuntimeError):
    """Training was stopped by a signal after its state was saved; ``exit_status`` is the signal's (128 + its
    number: 143 for SIGTERM, 130 for Ctrl-C's SIGINT), which ``joblog.job_log`` exits with."""

    def __init__(self, message: str, signal_name: str) -> None:
        super().__init__(message)
        self.exit_status = 128 + int(signal.Signals[signal_name])


@dataclass(frozen=True)
class TrainingConfig:
    epochs: int = 40
    lr: float = 20.0
    lr_decay: float = 4.0
    clip: float = 0.25
    bptt: int = 35
    batch_size: int = 20
    eval_batch_size: int = 10
    save_every_batches: int = 200
    seed: int = 1111


def batchify(ids: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Cut a 1-D id stream into ``batch_size`` columns (time x batch), dropping the remainder."""
    nbatch = ids.size(0) // batch_size
    if nbatch < 2:
        raise TrainingError(f"{ids.size(0)} tokens are too few for batch size {batch_size}")
    return ids[: nbatch * batch_size].view(batch_size, -1).t().contiguous()


def get_batch(source: torch.Tensor, i: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Input rows ``i .. i+L`` and the next-word targets (flattened)."""
    seq_len = min(bptt, source.size(0) - 1 - i)
    return source[i: i + seq_len], source[i + 1: i + 1 + seq_len].reshape(-1)


def batch_starts(source: torch.Tensor, bptt: int) -> range:
    return range(0, source.size(0) - 1, bptt)


class _EvaluationStopped(Exception):
    """``evaluate`` was asked to stop (a signal came while the trainer validated)."""


@torch.inference_mode()
def evaluate(model: LSTMLanguageModel, source: torch.Tensor, bptt: int, progress: str | None = None,
             stop: Callable[[], bool] | None = None) -> float:
    """Mean cross-entropy per token over a batchified stream (hidden state carried); ``progress``: a progress bar
    (to stderr, the job's log) with this description; ``stop``: asked before each batch, raises
    :class:`_EvaluationStopped` when it says so (at the thesis's size a CPU validates for minutes)."""
    model.eval()
    hidden = model.init_hidden(source.size(1))
    total = torch.zeros((), dtype=torch.float64, device=source.device)
    starts = batch_starts(source, bptt)
    for i in tqdm(starts, desc=progress, file=sys.stderr, disable=progress is None, mininterval=5.0, unit="batch"):
        if stop is not None and stop():
            raise _EvaluationStopped()
        data, targets = get_batch(source, i, bptt)
        logits, hidden = model(data, hidden)
        total += len(data) * F.cross_entropy(logits, targets).double()
    return float(total) / (source.size(0) - 1)


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# The library modules whose code decides the weights a training computes (the trainer, the model, the
# loss and the pinned CPU kernels): a resume file written by other code of them is not continued.
TRAINING_CODE = ("training", "model", "loss", "kernels")


def params_digest(model_config: ModelConfig, cfg: TrainingConfig, data_digest: str, device: torch.device) -> str:
    """Identity of a training run: resume files of another run (other settings, data, training code, device,
    CPU threads, CPU kernels or torch version: each can change the last bits of the weights) are never used. How
    often a resume file is written is not part of it: a resumed run is bit-identical whatever the save interval."""
    training = {k: v for k, v in asdict(cfg).items() if k != "save_every_batches"}
    run: dict[str, Any] = {"device": device.type, "torch": torch.__version__}
    if device.type == "cuda":
        run.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version())
    else:
        run.update(threads=torch.get_num_threads(), kernels=cpu_kernels())
    blob = json.dumps({"model": asdict(model_config), "training": training, "data": data_digest,
                       "code": library_digest(TRAINING_CODE), "run": run}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def tensor_digest(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.cpu().numpy().tobytes())
    return h.hexdigest()


@dataclass
class TrainingResult:
    model: LSTMLanguageModel
    history: list[dict[str, float]]
    best_valid_loss: float
    test_loss: float | None
    seconds: float
    resumed_from: dict[str, int] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def valid_ppl(self) -> float:
        return math.exp(self.best_valid_loss)

    @property
    def test_ppl(self) -> float | None:
        return None if self.test_loss is None else math.exp(self.test_loss)


class _SignalStop:
    """Turns SIGTERM/SIGINT into a flag the loop checks after each batch."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> "_SignalStop":
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        self.requested = signal.Signals(signum).name

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def train(
    name: str,
    model_config: ModelConfig,
    cfg: TrainingConfig,
    train_ids: torch.Tensor,
    valid_ids: torch.Tensor,
    test_ids: torch.Tensor | None = None,
    resume_path: str | Path | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    after_batch: Callable[[int, int], None] | None = None,
) -> TrainingResult:
    """Train one model; resume from ``resume_path`` when it holds this run's state.

    ``after_batch(epoch, batch)`` is called after each batch (tests use it to crash a run).
    """
    device = torch.device(device)
    data_digest = tensor_digest(train_ids, valid_ids)
    digest = params_digest(model_config, cfg, data_digest, device)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)
    model = LSTMLanguageModel(model_config).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, foreach=True)

    train_data = batchify(train_ids, cfg.batch_size).to(device)
    valid_data = batchify(valid_ids, cfg.eval_batch_size).to(device)
    starts = list(batch_starts(train_data, cfg.bptt))

    # Run state (everything a resume needs).
    epoch, next_batch = 1, 0
    lr = cfg.lr
    best_valid = math.inf
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, float]] = []
    hidden = model.init_hidden(cfg.batch_size)
    epoch_loss = torch.zeros((), dtype=torch.float64, device=device)
    epoch_seconds = 0.0
    resumed_from = None

    resume_path = Path(resume_path) if resume_path else None
    if resume_path is not None and resume_path.is_file():
        try:
            damaged = damaged_member(resume_path)  # torch.load would read other weights from it
            if damaged:
                raise ValueError(f"its part {damaged} does not match its checksum")
            # onto the CPU, whatever device trains: torch takes RNG states only as CPU byte tensors, and
            # load_state_dict copies the weights to the model's device
            st = torch.load(resume_path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a torn, damaged or foreign file: start afresh, say so
            log.warning("%s: unreadable resume state (%s); starting from scratch", resume_path, exc)
            st = None
        if st is not None and st.get("format") == RESUME_FORMAT and st.get("params_digest") == digest:
            model.load_state_dict(st["model"])
            optimizer.load_state_dict(st["optimizer"])
            epoch, next_batch, lr = int(st["epoch"]), int(st["next_batch"]), float(st["lr"])
            best_valid = float(st["best_valid"])
            best_state = st["best_state"] or None
            history = json.loads(st["history"])
            hidden = (st["hidden"][0].to(device), st["hidden"][1].to(device))
            epoch_loss = st["epoch_loss"].to(device)
            epoch_seconds = float(st["epoch_seconds"])
            _set_rng_state(st["rng"])
            resumed_from = {"epoch": epoch, "batch": next_batch}
            log.info("%s: resuming at epoch %d, batch %d (lr %g)", name, epoch, next_batch, lr)
        elif st is not None:
            log.warning("%s: resume state belongs to other settings, data, training code, device, CPU threads, CPU "
                        "kernels or torch version; starting from scratch",
                        resume_path)

    def save_state() -> None:
        if resume_path is None:
            return
        state = {
            "format": RESUME_FORMAT,
            "params_digest": digest,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": epoch,
            "next_batch": next_batch,
            "lr": lr,
            "best_valid": best_valid,
            "best_state": best_state or {},
            "history": json.dumps(history),
            "hidden": [hidden[0].detach(), hidden[1].detach()],
            "epoch_loss": epoch_loss,
            "epoch_seconds": epoch_seconds,
            "rng": _rng_state(),
        }
        with atomic_path(resume_path) as tmp:
            torch.save(state, tmp)

    params = list(model.parameters())
    # cuDNN keeps the random state of nn.LSTM's between-layer dropout inside the library, where no
    # resume file reaches it. Setting the CUDA generator's state (to itself) before every batch makes
    # cuDNN draw a fresh one from that generator, so all randomness follows torch's generators and a
    # resumed run repeats the uninterrupted one bit for bit (1-3 % of a batch's time on an H100).
    reseed_cudnn = (device.type == "cuda" and model_config.layers > 1 and model_config.dropout > 0
                    and torch.backends.cudnn.enabled)
    t_start = time.monotonic()
    with _SignalStop() as stop:
        while epoch <= cfg.epochs:
            model.train()
            for group in optimizer.param_groups:
                group["lr"] = lr
            t0 = time.monotonic()
            bar = tqdm(total=len(starts), initial=next_batch, desc=f"{name} epoch {epoch}/{cfg.epochs}",
                       file=sys.stderr, disable=not progress, mininterval=5.0, unit="batch")
            while next_batch < len(starts):
                b = next_batch
                data, targets = get_batch(train_data, starts[b], cfg.bptt)
                # Truncated BPTT: carry the state's values, not its history.
                hidden = (hidden[0].detach(), hidden[1].detach())
                optimizer.zero_grad(set_to_none=True)
                if reseed_cudnn:
                    torch.cuda.set_rng_state(torch.cuda.get_rng_state(device), device)
                features, hidden = model.features(data, hidden)
                loss = linear_cross_entropy(features, model.decoder.weight, model.decoder.bias, targets)
                if not torch.isfinite(loss):
                    raise TrainingError(f"model {name}: loss is {loss.item()} at epoch {epoch}, batch {b + 1}"
                                        f" of {len(starts)} (lr {lr:g}); training stopped")
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, cfg.clip, foreach=True)
                optimizer.step()
                epoch_loss += loss.detach().double() * len(data)
                next_batch += 1
                bar.update(1)
                if after_batch is not None:
                    after_batch(epoch, next_batch)
                if stop.requested or next_batch % cfg.save_every_batches == 0:
                    epoch_seconds += time.monotonic() - t0
                    t0 = time.monotonic()
                    save_state()
                    if stop.requested:
                        bar.close()
                        raise Interrupted(f"model {name}: {stop.requested} at epoch {epoch}, batch {next_batch};"
                                          f" state saved to {resume_path}", stop.requested)
            bar.close()
            epoch_seconds += time.monotonic() - t0
            train_loss = float(epoch_loss) / (train_data.size(0) - 1)
            t_eval = time.monotonic()
            try:
                valid_loss = evaluate(model, valid_data, cfg.bptt,
                                      f"{name} validation {epoch}/{cfg.epochs}" if progress else None,
                                      stop=lambda: stop.requested is not None)
            except _EvaluationStopped:  # the epoch's training is done, its validation not: saved before it
                save_state()  # validating changes nothing a resume needs (eval mode draws no random numbers)
                raise Interrupted(f"model {name}: {stop.requested} during epoch {epoch}'s validation; state saved to "
                                  f"{resume_path} (the validation is done again on resuming)", stop.requested) from None
            if not math.isfinite(valid_loss):
                raise TrainingError(f"model {name}: validation loss is {valid_loss} after epoch {epoch}")
            row = {
                "epoch": epoch,
                "lr": lr,
                "train_loss": train_loss,
                "train_ppl": math.exp(min(train_loss, 700)),
                "valid_loss": valid_loss,
                "valid_ppl": math.exp(min(valid_loss, 700)),
                "seconds": epoch_seconds,
                "tokens_per_s": (train_data.numel() / epoch_seconds) if epoch_seconds > 0 else float("nan"),
                "eval_seconds": time.monotonic() - t_eval,
            }
            history.append(row)
            log.info("%s: epoch %d train ppl %.2f valid ppl %.2f lr %g (%.1f s, %.0f tokens/s)", name, epoch,
                     row["train_ppl"], row["valid_ppl"], lr, epoch_seconds, row["tokens_per_s"])
            if valid_loss < best_valid:
                best_valid = valid_loss
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                lr /= cfg.lr_decay
            epoch += 1
            next_batch = 0
            hidden = model.init_hidden(cfg.batch_size)
            epoch_loss = torch.zeros((), dtype=torch.float64, device=device)
            epoch_seconds = 0.0
            save_state()
            if stop.requested:  # it came after the validation's last batch: the state after it is saved
                raise Interrupted(f"model {name}: {stop.requested} after epoch {epoch - 1}'s validation; state saved"
                                  f" to {resume_path}", stop.requested)

    assert best_state is not None
    model.load_state_dict(best_state)
    test_loss = None
    if test_ids is not None:
        test_loss = evaluate(model, batchify(test_ids, cfg.eval_batch_size).to(device), cfg.bptt)
    model.eval()
    return TrainingResult(model=model.cpu(), history=history, best_valid_loss=best_valid, test_loss=test_loss,
                          seconds=time.monotonic() - t_start, resumed_from=resumed_from)
