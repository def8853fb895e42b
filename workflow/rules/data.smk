# Stage 1: WikiText-2 download (checksummed) and the shared vocabulary.

# Under a cluster executor the download runs where Snakemake runs (a login node), not as a cluster job:
# compute nodes often cannot reach the internet. It moves three files and takes seconds.
localrules:
    download_wikitext2,


rule download_wikitext2:
    output:
        expand("results/data/wikitext-2/{split}.txt", split=SPLITS),
    input:
        # as every job before the training (whose reruns would retrain every model), only the modules that decide
        # what it writes: an edit of the logging, provenance or file writing reruns nothing here
        lib("download_wikitext2", computing=True),
    # Only the checksums decide the files: a new url, timeout or retry count reruns nothing (the script reads
    # them from the config).
    params:
        sha256=config["data"]["sha256"],
    log:
        log_path("download_wikitext2", "wikitext-2"),
    benchmark:
        benchmark_path("download_wikitext2", "wikitext-2")
    resources:
        runtime=30,
        mem_mb=500,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/download_wikitext2.py"


rule vocabulary:
    output:
        "results/data/vocabulary.json",
    input:
        splits=expand("results/data/wikitext-2/{split}.txt", split=SPLITS),
        code=lib("vocabulary", computing=True),  # as the download's and the training's
    params:
        **named(
            max_size=config["vocabulary"]["max_size"],
            # with max_size, the words are ranked by their counts in the tokens the models train on
            train_tokens=config["training"]["train_tokens"] if config["vocabulary"]["max_size"] is not None else None,
        ),
    log:
        log_path("vocabulary", "vocabulary"),
    benchmark:
        benchmark_path("vocabulary", "vocabulary")
    resources:
        runtime=10,
        mem_mb=2000,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/vocabulary.py"
