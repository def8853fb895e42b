"""Training throughput: lstmscope's trainer vs a plain textbook loop of the same recipe.

Both train the same model (same initial weights, same data, same dropout seed) for one
epoch with SGD lr 20, clip 0.25, bptt 35, batch 20 on the CPU, in one process, and
the script prints tokens/s of each and their ratio. Timings are CPU seconds of this process
(steadier than wall time on a shared machine; with one thread they equal wall time on an idle
one); ours includes its validation pass over 2 000 tokens, about 1 % of the epoch's work. The textbook loop is the
pytorch/examples word_language_model loop: log_softmax + nll_loss, manual SGD update
``p.data.add_(p.grad, alpha=-lr)``, ``clip_grad_norm_`` with its defaults.

Usage: python benchmarks/train_throughput.py [--tokens 60000] [--hidden 64] [--embedding 32]
       [--vocab 10000] [--threads 1] [--repeats 3]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from common import DATA  # first: puts the library on sys.path and pins the CPU kernels as in the pipeline

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from lstmscope.model import LSTMLanguageModel, ModelConfig  # noqa: E402
from lstmscope.training import TrainingConfig, batchify, get_batch, train  # noqa: E402
from lstmscope.vocabulary import read_tokens, vocabulary_from_files  # noqa: E402



def textbook_epoch(model: LSTMLanguageModel, train_data: torch.Tensor, lr: float, clip: float, bptt: int,
                   batch_size: int, losses: list | None = None) -> float:
    """One epoch of pytorch/examples' train(); returns seconds (and appends each batch's loss and length to
    ``losses``)."""
    model.train()
    hidden = model.init_hidden(batch_size)
    losses = [] if losses is None else losses
    start = time.process_time()
    for i in range(0, train_data.size(0) - 1, bptt):
        data, targets = get_batch(train_data, i, bptt)
        model.zero_grad()
        hidden = tuple(h.detach() for h in hidden)
        output, hidden = model(data, hidden)
        loss = F.nll_loss(F.log_softmax(output, dim=1), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        for p in model.parameters():
            p.data.add_(p.grad, alpha=-lr)
        losses.append((loss.item(), len(data)))
    return time.process_time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--tokens", type=int, default=60000)
    ap.add_argument("--vocab", type=int, default=10000)
    ap.add_argument("--embedding", type=int, default=32)
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    splits = [Path(args.data) / f"{s}.txt" for s in ("train", "valid", "test")]
    vocab = vocabulary_from_files(splits, max_size=args.vocab)
    train_ids = torch.from_numpy(vocab.encode(read_tokens(splits[0])[: args.tokens]))
    valid_ids = torch.from_numpy(vocab.encode(read_tokens(splits[1])[:2000]))
    mc = ModelConfig(len(vocab), args.embedding, args.hidden, 2, dropout=0.2)
    cfg = TrainingConfig(epochs=1, save_every_batches=10**9, seed=1)
    ntok = batchify(train_ids, cfg.batch_size).numel()

    # the first torch.optim.SGD imports torch._dynamo (~1 s of CPU), once per process: not the training's time
    torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    ours, book, losses = [], [], []
    for rep in range(args.repeats):  # interleaved, so that machine load hits both alike
        start = time.process_time()
        result = train("bench", mc, cfg, train_ids, valid_ids, progress=False)
        ours.append(time.process_time() - start)
        torch.manual_seed(cfg.seed)
        model = LSTMLanguageModel(mc)
        losses.clear()
        book.append(textbook_epoch(model, batchify(train_ids, cfg.batch_size), cfg.lr, cfg.clip, cfg.bptt,
                                   cfg.batch_size, losses))
        print(f"repeat {rep + 1}: ours {ntok / ours[-1]:,.0f} tokens/s, textbook {ntok / book[-1]:,.0f} tokens/s",
              flush=True)
    o, b = statistics.median(ours), statistics.median(book)
    print(f"model: vocab {len(vocab)}, embedding {args.embedding}, hidden {args.hidden}, 2 layers; "
          f"{ntok} tokens/epoch, {args.threads} thread(s)")
    print(f"ours:     {ntok / o:,.0f} tokens/s")
    print(f"textbook: {ntok / b:,.0f} tokens/s")
    print(f"ratio (ours / textbook): {b / o:.2f}x")
    # ours: the epoch's loss per token predicted, each batch weighted by its length (the last is shorter)
    mine = result.history[0]["train_loss"]
    theirs = sum(loss * n for loss, n in losses) / sum(n for _, n in losses)
    print(f"the same training: mean training loss ours {mine:.5f}, textbook {theirs:.5f}: "
          f"{abs(mine - theirs) < 1e-4 * theirs}")


if __name__ == "__main__":
    main()
