"""Rule context_use_vs_dropout: every model's context use on one text, a table and a figure against dropout."""
from lstmscope.context_use_summary import context_use_vs_dropout
from lstmscope.figures import record_job
from lstmscope.joblog import job_log
from lstmscope.provenance import record_tables

with job_log(snakemake.log[0], "context_use_vs_dropout") as log:  # noqa: F821
    record_job(snakemake)  # noqa: F821  (named in each figure's metadata)
    o, p = snakemake.output, snakemake.params  # noqa: F821
    summary = context_use_vs_dropout(snakemake.input.tables, o.table, o.png, o.svg,  # noqa: F821
                                     tolerance=float(p.tolerance), dpi=int(p.dpi))
    log.info("%d models", summary["model"].nunique())
    record_tables(snakemake)  # noqa: F821  (the CSVs' provenance, beside them)
