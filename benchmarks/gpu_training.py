"""Training on a GPU at a preset's model size: throughput, memory, per-batch sync, determinism, resume.

Needs a CUDA device; runs on the first one:

1. throughput: the pipeline's training job (``run_training_job``: deterministic algorithms, the fixed
   cuBLAS workspace, as every job) on the preset's model (its vocabulary, embedding, hidden size and
   layers; dropout 0.5) for one epoch of the first --tokens training tokens, then the whole validation
   split (the test split is scored by another job, rule test_perplexity): tokens/s, evaluation seconds, peak GPU
   memory, and the preset's
   training time per model: epochs x (the whole training split at that pace + one validation pass);
2. sync: --sync-batches training steps of that model timed with the trainer's per-batch check of the
   loss (one GPU-to-host copy, which waits for the batch) and without it;
3. determinism: two trainings of --check-batches batches from the same seed, weights compared bit by bit;
   with --no-fixed-workspace the cuBLAS workspace is left to its default, to see what fixing it buys;
4. resume: the same training stopped by a crash just after a save point, and by SIGTERM between save
   points, each resumed from its resume file, against the uninterrupted one.

Warnings that torch raises about nondeterministic operations are printed once each.

Usage: python benchmarks/gpu_training.py [--preset presets/thesis.yaml] [--tokens 210000]
       [--sync-batches 100] [--check-batches 20] [--skip-throughput] [--no-fixed-workspace]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import tempfile
import time
import warnings
from pathlib import Path

import yaml

from common import DATA, ROOT  # noqa: E402  (also puts the library on sys.path)


def load_settings(preset: Path) -> dict:
    """config.yaml's vocabulary, models, architecture and training sections, overridden by the preset's.

    Plain YAML on purpose, not ``lstmscope.config.validate_config``: the script needs only torch, h5py and
    PyYAML, so it runs on a GPU machine's stock Python without the project's other dependencies."""
    base = yaml.safe_load((ROOT / "config.yaml").read_text())
    over = yaml.safe_load(preset.read_text()) or {}
    return {k: {**base.get(k, {}), **over.get(k, {})} for k in ("vocabulary", "models", "architecture", "training")}


def state_diff(a, b) -> float:
    """Largest |difference| between two models' weights (0.0: bit-identical)."""
    sa, sb = a.state_dict(), b.state_dict()
    return max(float((sa[k].double() - sb[k].double()).abs().max()) for k in sa)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--preset", default=str(ROOT / "presets" / "thesis.yaml"))
    ap.add_argument("--tokens", type=int, default=210000, help="training tokens of the timed epoch")
    ap.add_argument("--sync-batches", type=int, default=100)
    ap.add_argument("--check-batches", type=int, default=20)
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--no-fixed-workspace", action="store_true")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"),
                    help="cpu only to try the script out (its smoke test does)")
    args = ap.parse_args()
    if args.no_fixed_workspace:
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ""  # configure_torch keeps a value that is set

    import torch

    from lstmscope.loss import linear_cross_entropy
    from lstmscope.model import LSTMLanguageModel, ModelConfig
    from lstmscope.training import Interrupted, TrainingConfig, batchify, get_batch, train
    from lstmscope.training_job import configure_torch, run_training_job
    from lstmscope.vocabulary import read_tokens, vocabulary_from_files

    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    if cuda and not torch.cuda.is_available():
        raise SystemExit("gpu_training.py: no CUDA device (--device cpu only tries the script out)")
    name = torch.cuda.get_device_name(0) if cuda else "CPU"

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()
    s = load_settings(Path(args.preset))
    arch, tr = s["architecture"], s["training"]
    threads = int(tr.get("threads", 4))
    configure_torch(threads)
    seen: set[str] = set()
    warnings.simplefilter("always")

    def once(message, category, filename, lineno, file=None, line=None):
        text = str(message).split("\n")[0]
        if text not in seen:
            seen.add(text)
            print(f"WARNING ({category.__name__}): {text}", flush=True)
    warnings.showwarning = once

    data = Path(args.data)
    splits = {k: str(data / f"{k}.txt") for k in ("train", "valid", "test")}
    t0 = time.perf_counter()
    vocab = vocabulary_from_files([splits["train"], splits["valid"], splits["test"]],
                                  max_size=s["vocabulary"].get("max_size"))
    n_train = len(read_tokens(splits["train"]))
    print(f"device: {name}; torch {torch.__version__}; cuDNN "
          f"{torch.backends.cudnn.version()}; CUBLAS_WORKSPACE_CONFIG={os.environ.get('CUBLAS_WORKSPACE_CONFIG')!r}; "
          f"{threads} CPU threads")
    print(f"model: vocabulary {len(vocab)}, embedding {arch['embedding_size']}, hidden {arch['hidden_size']}, "
          f"{arch['layers']} layers; batch {tr['batch_size']}, bptt {tr['bptt']}; vocabulary built in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    mc = ModelConfig(len(vocab), int(arch["embedding_size"]), int(arch["hidden_size"]), int(arch["layers"]), 0.5)
    result: dict = {"device": name, "torch": torch.__version__,
                    "cublas_workspace_config": os.environ.get("CUBLAS_WORKSPACE_CONFIG")}

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        vocab.save(tmp / "vocabulary.json")
        if not args.skip_throughput:
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            training = dict(tr, epochs=1, train_tokens=args.tokens, valid_tokens=None,
                            save_every_batches=10**9)
            rec = run_training_job(model={"name": "gpu_probe", "dropout": 0.5, "seed": 1, "replicate": 0},
                                   architecture=arch, training=training, device=args.device, gpus=int(cuda), threads=threads,
                                   split_paths=splits, vocabulary_path=str(tmp / "vocabulary.json"),
                                   checkpoint_path=str(tmp / "model.pt"), metrics_path=str(tmp / "metrics.json"),
                                   resume_path=None)
            ep = rec["epochs"][0]
            peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
            epoch_s = n_train / ep["tokens_per_s"]
            per_model_h = int(tr["epochs"]) * (epoch_s + ep["eval_seconds"]) / 3600
            models = len(s["models"]["dropouts"]) * int(s["models"].get("replicates", 1))
            print(f"throughput: {ep['tokens_per_s']:,.0f} tokens/s over {args.tokens} tokens "
                  f"(train ppl {ep['train_ppl']:.0f}, valid ppl {ep['valid_ppl']:.0f} after them); "
                  f"validation pass {ep['eval_seconds']:.1f} s; peak GPU memory {peak:.2f} GiB")
            print(f"preset: {n_train} training tokens -> {epoch_s / 60:.1f} min per epoch; "
                  f"{tr['epochs']} epochs -> {per_model_h:.2f} h per model on this device, "
                  f"{models * per_model_h:.1f} h for all {models}", flush=True)
            result.update(tokens_per_s=ep["tokens_per_s"], eval_seconds=ep["eval_seconds"], peak_gib=peak,
                          epoch_minutes=epoch_s / 60, hours_per_model=per_model_h)

        # 2. the cost of the per-batch check of the loss
        torch.manual_seed(1)
        model = LSTMLanguageModel(mc).to(dev).train()
        ids = torch.from_numpy(vocab.encode(read_tokens(splits["train"])[: (args.sync_batches + 2) * 700 + 1]))
        source = batchify(ids, int(tr["batch_size"])).to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=float(tr["lr"]), foreach=True)
        params = list(model.parameters())

        def steps(check: bool) -> float:
            hidden = model.init_hidden(int(tr["batch_size"]))
            sync()
            start = time.perf_counter()
            for b in range(args.sync_batches):
                data, targets = get_batch(source, b * int(tr["bptt"]), int(tr["bptt"]))
                hidden = (hidden[0].detach(), hidden[1].detach())
                opt.zero_grad(set_to_none=True)
                feats, hidden = model.features(data, hidden)
                loss = linear_cross_entropy(feats, model.decoder.weight, model.decoder.bias, targets)
                if check and not torch.isfinite(loss):
                    raise RuntimeError("non-finite loss")
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, float(tr["clip"]), foreach=True)
                opt.step()
            sync()
            return time.perf_counter() - start

        steps(True)  # warm-up
        with_check = min(steps(True) for _ in range(2))
        without = min(steps(False) for _ in range(2))
        print(f"sync: {args.sync_batches} batches {with_check:.3f} s with the per-batch check, {without:.3f} s "
              f"without ({with_check / without:.3f}x)", flush=True)
        result.update(sync_with=with_check, sync_without=without)

        # 3. determinism and 4. resume
        n = args.check_batches
        cfg = TrainingConfig(epochs=1, lr=float(tr["lr"]), lr_decay=float(tr["lr_decay"]), clip=float(tr["clip"]),
                             bptt=int(tr["bptt"]), batch_size=int(tr["batch_size"]),
                             eval_batch_size=int(tr["eval_batch_size"]), save_every_batches=n // 2, seed=1)
        words = read_tokens(splits["train"])[: n * cfg.bptt * cfg.batch_size + cfg.batch_size]
        train_ids = torch.from_numpy(vocab.encode(words))
        valid_ids = torch.from_numpy(vocab.encode(read_tokens(splits["valid"])[:7000]))
        runs = [train("a", mc, cfg, train_ids, valid_ids, device=dev, progress=False).model for _ in range(2)]
        same = state_diff(runs[0], runs[1])
        print(f"determinism: two runs of {n} batches: max |weight difference| {same:.3g}"
              f"{' (bit-identical)' if same == 0 else ''}", flush=True)

        class Crash(Exception):
            pass

        # a crash after a save point (resumes from it) and SIGTERM between save points (saves where it is)
        resumes = {}
        for how, at in (("crash", n // 2 + 1), ("SIGTERM", n // 2 + 3)):
            def stop(epoch: int, batch: int) -> None:
                if batch == at:
                    if how == "crash":
                        raise Crash
                    os.kill(os.getpid(), signal.SIGTERM)

            resume = tmp / f"resume-{how}.pt"
            try:
                train("a", mc, cfg, train_ids, valid_ids, resume_path=resume, device=dev, progress=False,
                      after_batch=stop)
            except (Crash, Interrupted):
                pass
            resumed = train("a", mc, cfg, train_ids, valid_ids, resume_path=resume, device=dev, progress=False)
            diff = state_diff(runs[0], resumed.model)
            resumes[how] = diff
            print(f"resume: {how} at batch {at}, resumed from {resumed.resumed_from}: max |weight difference| to "
                  f"the uninterrupted run {diff:.3g}{' (bit-identical)' if diff == 0 else ''}", flush=True)
        result.update(determinism_diff=same, resume_diff=resumes, warnings=sorted(seen))
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
