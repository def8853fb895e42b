"""Rule ablation_figures: the perplexity change without every removed neuron, and the words the most changing one
helped and hindered."""
from lstmscope.ablation_figures import ablation_figures
from lstmscope.figures import record_job
from lstmscope.joblog import job_log

with job_log(snakemake.log[0], "ablation_figures") as log:  # noqa: F821
    record_job(snakemake)  # noqa: F821  (named in each figure's metadata)
    o, p = snakemake.output, snakemake.params  # noqa: F821
    ablation_figures(snakemake.input.h5, snakemake.input.table, o.effects_png, o.effects_svg,  # noqa: F821
                     o.heatmap_png, o.heatmap_svg, passage_tokens=int(p.passage_tokens), passage=str(p.passage),
                     dpi=int(p.dpi))
