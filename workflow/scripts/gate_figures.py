"""Rule gate_figures: one model's gate saturation plot (one model, text)."""
from lstmscope.gate_figures import gate_figure
from lstmscope.figures import record_job
from lstmscope.joblog import job_log

with job_log(snakemake.log[0], "gate_figures") as log:  # noqa: F821
    record_job(snakemake)  # noqa: F821  (named in each figure's metadata)
    p = snakemake.params  # noqa: F821
    table = gate_figure(snakemake.input.table, snakemake.output.png, snakemake.output.svg,  # noqa: F821
                        dpi=int(p.dpi))
    log.info("%d units", len(table))
