"""Rule neuron_tracking_table: the short table of the report, the top neuron of every model, text, layer, state."""
from lstmscope.joblog import job_log
from lstmscope.provenance import record_tables
from lstmscope.tracking import tracking_summary

with job_log(snakemake.log[0], "neuron_tracking_table") as log:  # noqa: F821
    summary = tracking_summary(snakemake.input.tables, snakemake.output[0],  # noqa: F821
                               per_group=int(snakemake.params.per_group))  # noqa: F821
    log.info("%d rows", len(summary))
    record_tables(snakemake)  # noqa: F821  (the CSVs' provenance, beside them)
