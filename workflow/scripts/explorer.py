"""Rule explorer: the interactive cluster explorer of one model's text (one offline HTML file)."""
from lstmscope.cluster import keyed_tables
from lstmscope.explorer import build_explorer
from lstmscope.joblog import job_log

with job_log(snakemake.log[0], "explorer") as log:  # noqa: F821
    p = snakemake.params  # noqa: F821
    tables = keyed_tables(list(snakemake.input.tables), p.views)  # noqa: F821
    size = build_explorer(tables, snakemake.output[0], p.title, context_tokens=p.context_tokens,  # noqa: F821
                          template=snakemake.input.template, activations=snakemake.input.activations,  # noqa: F821
                          expectancy_floor=p.expectancy_floor, rule=snakemake.rule)  # noqa: F821
    log.info("%d views x linkages, %.1f kB", len(tables), size / 1e3)
