"""Rule neuron_explorer: the interactive neuron explorer of one model's text (one offline HTML file)."""
from lstmscope.joblog import job_log
from lstmscope.neuron_explorer import build_neuron_explorer

with job_log(snakemake.log[0], "neuron_explorer") as log:  # noqa: F821
    p = snakemake.params  # noqa: F821
    size = build_neuron_explorer(snakemake.input.activations, snakemake.input.divergence,  # noqa: F821
                                 snakemake.output.page, neurons=None if p.neurons is None else int(p.neurons),  # noqa: F821
                                 passage_tokens=int(p.passage_tokens), passage=str(p.passage), title=str(p.title),
                                 scale=str(p.scale), expectancy_floor=p.expectancy_floor,
                                 template=snakemake.input.template,  # noqa: F821
                                 ablation_path=snakemake.input.ablation or None,  # noqa: F821
                                 report_output=snakemake.output.report_page, rule=snakemake.rule)  # noqa: F821
    log.info("%.1f kB", size / 1e3)
