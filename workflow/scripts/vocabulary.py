"""Rule vocabulary: pytorch/examples tokenisation over all three splits."""
from lstmscope.joblog import job_log
from lstmscope.provenance import code_version, sha256_file
from lstmscope.vocabulary import vocabulary_from_files

with job_log(snakemake.log[0], "vocabulary") as log:  # noqa: F821
    splits = list(snakemake.input.splits)  # noqa: F821
    max_size = snakemake.params.max_size  # noqa: F821
    vocab = vocabulary_from_files(splits, max_size=max_size)
    log.info("vocabulary of %d words (max_size=%s)", len(vocab), max_size)
    vocab.save(snakemake.output[0], max_size=max_size,  # noqa: F821
               sources={p: sha256_file(p) for p in splits}, **code_version())
