"""Rule histogram_range_table: how many values of every model, text, layer and state fell outside the bins."""
from lstmscope.histogram import histogram_range_table
from lstmscope.joblog import job_log
from lstmscope.provenance import record_tables

with job_log(snakemake.log[0], "histogram_range_table") as log:  # noqa: F821
    table = histogram_range_table(snakemake.input.ranges, snakemake.output[0])  # noqa: F821
    log.info("%d rows; %d with values outside the interval", len(table),
             int(((table["underflow"] + table["overflow"]) > 0).sum()))
    record_tables(snakemake)  # noqa: F821  (the CSVs' provenance, beside them)
