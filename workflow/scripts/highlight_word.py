"""Rule highlight_word: one word's tokens among all points, every layer x state (Fig. 5.11)."""
from lstmscope.cluster_figures import highlight_word_figure
from lstmscope.points import read_embedding, read_same_tokens
from lstmscope.figures import record_job
from lstmscope.joblog import job_log

with job_log(snakemake.log[0], "highlight_word") as log:  # noqa: F821
    record_job(snakemake)  # noqa: F821  (named in each figure's metadata)
    p = snakemake.params  # noqa: F821
    embeddings = read_same_tokens({(int(layer), state): path  # one text's views: the same tokens in each
                                   for (layer, state), path in zip(p.views, snakemake.input.embeddings)},  # noqa: F821
                                  read_embedding)
    highlight_word_figure(embeddings, p.word, f"{p.title}: {p.word!r} among all tokens",
                          snakemake.output.png, snakemake.output.svg, dpi=p.dpi)  # noqa: F821
    log.info("highlighted %r in %d views", p.word, len(embeddings))
