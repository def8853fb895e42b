"""Rule ablation_table: the table of one model's ablations (perplexities, effects, the words listed)."""
from lstmscope.ablation_table import write_ablation_table
from lstmscope.joblog import job_log
from lstmscope.provenance import record_tables

with job_log(snakemake.log[0], "ablation_table") as log:  # noqa: F821
    p = snakemake.params  # noqa: F821
    write_ablation_table(
        h5_path=snakemake.input.h5,  # noqa: F821
        divergence_path=snakemake.input.divergence,  # noqa: F821
        csv_path=snakemake.output.table,  # noqa: F821
        min_count=int(p.min_count),
        top_words=int(p.top_words),
    )
    record_tables(snakemake)  # noqa: F821  (the CSVs' provenance, beside them)
