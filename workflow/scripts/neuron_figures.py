"""Rule neuron_figures: h vs c distributions, top/bottom KL neurons, a dead neuron (Fig. 5.1, 5.2/5.5, 5.6)."""
from lstmscope.figures import record_job
from lstmscope.joblog import job_log
from lstmscope.neuron_figures import neuron_figures

with job_log(snakemake.log[0], "neuron_figures") as log:  # noqa: F821
    record_job(snakemake)  # noqa: F821  (named in each figure's metadata)
    o, p = snakemake.output, snakemake.params  # noqa: F821
    neuron_figures(
        histograms_path=snakemake.input.histograms,  # noqa: F821
        divergence_path=snakemake.input.divergence,  # noqa: F821
        top_k=int(p.top_k),
        dead_threshold=float(p.dead_threshold),
        dead_fraction=float(p.dead_fraction),
        outputs={"distributions": (o.distributions_png, o.distributions_svg),
                 "top_bottom": (o.top_bottom_png, o.top_bottom_svg),
                 "dead": (o.dead_png, o.dead_svg)},
        dpi=int(p.dpi),
    )
