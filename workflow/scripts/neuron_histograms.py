"""Rule neuron_histograms: every neuron's histogram of every layer and state, streamed over the HDF5 chunks."""
from lstmscope.histogram import neuron_histograms
from lstmscope.joblog import job_log
from lstmscope.provenance import record_tables

with job_log(snakemake.log[0], "neuron_histograms") as log:  # noqa: F821
    p = snakemake.params  # noqa: F821
    neuron_histograms(
        activations_path=snakemake.input.activations,  # noqa: F821
        output_path=snakemake.output.histograms,  # noqa: F821
        range_csv_path=snakemake.output.ranges,  # noqa: F821
        bin_width=float(p.bin_width),
        cell_range=[float(v) for v in p.cell_range],
        near_zero=float(p.near_zero),
    )
    record_tables(snakemake)  # noqa: F821  (the CSVs' provenance, beside them)
