"""Rule context_probes: how well each layer, its best neuron and the word alone tell each context (one model, text)."""
from lstmscope.joblog import job_log
from lstmscope.probes import context_probes
from lstmscope.provenance import record_tables

with job_log(snakemake.log[0], "context_probes") as log:  # noqa: F821
    p = snakemake.params  # noqa: F821
    table = context_probes(
        activations_path=snakemake.input.activations,  # noqa: F821
        divergence_path=snakemake.input.divergence,  # noqa: F821
        csv_path=snakemake.output[0],  # noqa: F821
        test_share=float(p.test_share),
        regularisation=float(p.regularisation),
        kl_neurons=int(p.kl_neurons),
        window=int(p.window),
    )
    log.info("%d layer, state and context rows, %d scored", len(table), int(table["layer_auc"].notna().sum()))
    record_tables(snakemake)  # noqa: F821  (the CSV's provenance, beside it)
