"""Rule embed_tsne: one layer's hidden or cell states of one text -> 2-D t-SNE table."""
from lstmscope.embedding import TSNESettings, embed_tsne, software
from lstmscope.joblog import job_log
from lstmscope.provenance import record_tables

with job_log(snakemake.log[0], "embed_tsne") as log:  # noqa: F821
    p = snakemake.params  # noqa: F821
    settings = TSNESettings(pca_components=p.pca_components, perplexity=p.perplexity, n_iter=p.n_iter,
                            early_exaggeration_iter=p.early_exaggeration_iter, seed=p.seed,
                            initialization=p.initialization)
    log.info("settings: %s, max_tokens %s", settings, p.max_tokens)
    embed_tsne(snakemake.input.activations, snakemake.output[0], layer=p.layer, state=p.state,  # noqa: F821
               max_tokens=p.max_tokens, settings=settings, n_jobs=1)
    record_tables(snakemake, software=software())  # noqa: F821  (the CSV's provenance, beside it)
