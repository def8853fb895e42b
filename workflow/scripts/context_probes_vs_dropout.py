"""Rule context_probes_vs_dropout: every model's context probes of one text, a table and a figure against dropout."""
from lstmscope.figures import record_job
from lstmscope.joblog import job_log
from lstmscope.probe_figures import probes_vs_dropout
from lstmscope.provenance import record_tables

with job_log(snakemake.log[0], "context_probes_vs_dropout") as log:  # noqa: F821
    record_job(snakemake)  # noqa: F821  (named in each figure's metadata)
    o = snakemake.output  # noqa: F821
    table = probes_vs_dropout(snakemake.input.tables, o.table, o.png, o.svg,  # noqa: F821
                              dpi=int(snakemake.params.dpi), window=int(snakemake.params.window))  # noqa: F821
    log.info("%d models", table["model"].nunique())
    record_tables(snakemake)  # noqa: F821  (the CSVs' provenance, beside them)
