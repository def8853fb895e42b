"""Rule gates_vs_dropout: every model's gates of one text, a table and a figure against dropout."""
from lstmscope.gate_figures import gates_vs_dropout
from lstmscope.figures import record_job
from lstmscope.joblog import job_log
from lstmscope.provenance import record_tables

with job_log(snakemake.log[0], "gates_vs_dropout") as log:  # noqa: F821
    record_job(snakemake)  # noqa: F821  (named in each figure's metadata)
    o, p = snakemake.output, snakemake.params  # noqa: F821
    table = gates_vs_dropout(snakemake.input.tables, o.table, o.png, o.svg,  # noqa: F821
                             dpi=int(p.dpi),
                             divergence_paths=snakemake.input.divergence, top_k=int(p.top_k))  # noqa: F821
    log.info("%d models", table["model"].nunique())
    record_tables(snakemake)  # noqa: F821  (the CSVs' provenance, beside them)
