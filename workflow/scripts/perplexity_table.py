"""Rule perplexity_table: perplexity.csv and the perplexity-vs-dropout figure, from metrics.json and test.json."""
from lstmscope.figures import record_job
from lstmscope.joblog import job_log
from lstmscope.perplexity import perplexity_figure, perplexity_table, write_csv
from lstmscope.provenance import record_tables

with job_log(snakemake.log[0], "perplexity_table") as log:  # noqa: F821
    record_job(snakemake)  # noqa: F821  (named in each figure's metadata)
    table = perplexity_table(snakemake.input.metrics, snakemake.input.tests)  # noqa: F821
    write_csv(table, snakemake.output.table)  # noqa: F821
    perplexity_figure(table, snakemake.output.png, snakemake.output.svg, dpi=snakemake.params.dpi)  # noqa: F821
    log.info("%d models tabulated", len(table))
    record_tables(snakemake)  # noqa: F821  (the CSVs' provenance, beside them)
