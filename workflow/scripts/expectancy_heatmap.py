"""Rule expectancy_heatmap: the model's expectancy of each word of the text's beginning (Fig. 4.1)."""
from lstmscope.heatmap import expectancy_heatmap
from lstmscope.figures import record_job
from lstmscope.joblog import job_log

with job_log(snakemake.log[0], "expectancy_heatmap") as log:  # noqa: F821
    record_job(snakemake)  # noqa: F821  (named in each figure's metadata)
    o, p = snakemake.output, snakemake.params  # noqa: F821
    expectancy_heatmap(snakemake.input.activations, o.png, o.svg, tokens=int(p.tokens), dpi=int(p.dpi),  # noqa: F821
                       floor=p.floor)
