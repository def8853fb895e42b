"""Rule vocabulary: pytorch/examples tokenisation; with max_size, the most frequent words of the training tokens."""
from lstmscope.joblog import job_log
from lstmscope.provenance import code_version, sha256_file
from lstmscope.vocabulary import vocabulary_from_files

with job_log(snakemake.log[0], "vocabulary") as log:  # noqa: F821
    splits = list(snakemake.input.splits)  # noqa: F821
    max_size = snakemake.params.max_size  # noqa: F821
    train_tokens = snakemake.params.train_tokens  # noqa: F821  (None without max_size: the rule's param)
    vocab = vocabulary_from_files(splits, max_size=max_size, train_tokens=train_tokens)
    log.info("vocabulary of %d words (%s)", len(vocab), "every word of the splits" if max_size is None else
             f"max_size={max_size}, the most frequent of the first {train_tokens or 'all'} training tokens")
    vocab.save(snakemake.output[0], max_size=max_size, counted_on_train_tokens=train_tokens,  # noqa: F821
               sources={p: sha256_file(p) for p in splits}, **code_version())
