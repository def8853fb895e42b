"""Rule model_similarity: how alike every two models' layers are on one text (linear CKA), and which neurons of each
model match which of every other, two tables."""
from lstmscope.joblog import job_log
from lstmscope.provenance import record_tables
from lstmscope.similarity import model_similarity

with job_log(snakemake.log[0], "model_similarity") as log:  # noqa: F821
    o = snakemake.output  # noqa: F821
    table = model_similarity(snakemake.input.activations, o.table, o.matches)  # noqa: F821
    log.info("%d models, %d tokens", table["model_a"].nunique(), int(table["tokens"].iloc[0]))
    record_tables(snakemake)  # noqa: F821  (the CSVs' provenance, beside them)
