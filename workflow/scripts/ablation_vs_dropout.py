"""Rule ablation_vs_dropout: the perplexity cost of top-KL against random neurons, across the models' dropouts."""
from lstmscope.ablation_figures import ablation_vs_dropout
from lstmscope.figures import record_job
from lstmscope.joblog import job_log
from lstmscope.provenance import record_tables

with job_log(snakemake.log[0], "ablation_vs_dropout") as log:  # noqa: F821
    record_job(snakemake)  # noqa: F821  (named in each figure's metadata)
    o, p = snakemake.output, snakemake.params  # noqa: F821
    ablation_vs_dropout(list(snakemake.input.tables), o.table, o.png, o.svg, dpi=int(p.dpi),  # noqa: F821
                        state=str(p.state))
    record_tables(snakemake)  # noqa: F821  (the CSVs' provenance, beside them)
