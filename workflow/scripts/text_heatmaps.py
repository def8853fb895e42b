"""Rule text_heatmaps: the top KL neurons of every layer and state drawn over text, h and c stacked."""
from lstmscope.neuron_heatmaps import text_heatmaps
from lstmscope.figures import record_job
from lstmscope.joblog import job_log

with job_log(snakemake.log[0], "text_heatmaps") as log:  # noqa: F821
    record_job(snakemake)  # noqa: F821  (named in each figure's metadata)
    o, p = snakemake.output, snakemake.params  # noqa: F821
    text_heatmaps(
        activations_path=snakemake.input.activations,  # noqa: F821
        divergence_path=snakemake.input.divergence,  # noqa: F821
        outputs={(int(layer), str(state)): (png, svg)
                 for layer, state, png, svg in zip(p.layers, p.states, o.png, o.svg)},
        neurons=int(p.neurons),
        passage_tokens=int(p.passage_tokens),
        dpi=int(p.dpi),
        scale=str(p.scale),
        passage=str(p.passage),
    )
