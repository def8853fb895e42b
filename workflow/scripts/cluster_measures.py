"""Rule cluster_measures: Table 5.1 (CSV and rendered) and contiguity/purity of one model's text."""
from lstmscope.cluster import keyed_tables
from lstmscope.cluster_measures import cluster_measures, top_words_html, write_csv, write_html
from lstmscope.html_page import page_provenance, with_provenance
from lstmscope.joblog import job_log
from lstmscope.provenance import record_tables

with job_log(snakemake.log[0], "cluster_measures") as log:  # noqa: F821
    p = snakemake.params  # noqa: F821
    out = snakemake.output  # noqa: F821
    tables = keyed_tables(list(snakemake.input.tables), p.views)  # noqa: F821
    clusters, measures = cluster_measures(tables, p.model, p.text, top_words=p.top_words,
                                          shuffles=p.shuffles, seed=p.seed, space=p.space)
    write_csv(clusters, out.clusters)
    write_csv(measures, out.measures)
    page = top_words_html(clusters, measures, f"Table 5.1: what the clusters hold ({p.model}, {p.text})")
    # the page travels alone, as an explorer page does: its provenance in it (the CSVs' beside them)
    write_html(with_provenance(page, page_provenance(list(snakemake.input.tables), snakemake.rule)),  # noqa: F821
               out.html)
    for r in measures.itertuples():
        log.info("layer %s %s %s: contiguity %.3f vs %.3f shuffled (ratio %.2f), purity %.2f",
                 r.layer, r.state, r.linkage, r.mean_run_length, r.shuffled_run_length, r.contiguity_ratio, r.purity)
    record_tables(snakemake)  # noqa: F821  (the CSVs' provenance, beside them)
