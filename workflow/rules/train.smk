# Stage 2: one LSTM language model per dropout x replicate, its test perplexity; perplexity table and figure.

# Under a cluster executor these small jobs (a table or figure from tables, or from one column of a file: seconds
# each) run where Snakemake runs, as the download does, instead of each waiting in the queue as a job of its own.
localrules:
    perplexity_table,


rule train_lstm:
    output:
        checkpoint="results/models/{model}/model.pt",
        metrics="results/models/{model}/metrics.json",
    input:
        splits=expand("results/data/wikitext-2/{split}.txt", split=["train", "valid"]),
        vocabulary="results/data/vocabulary.json",
        # the modules that decide the weights: an edit of the logging, provenance or file writing retrains nothing
        code=lib("train_lstm", computing=True),
    params:
        **named(
            model=train_params,
            architecture=config["architecture"],
            # save_every_batches decides only how often a resume file is written, not the weights (a resumed run
            # is bit-identical): changing it retrains nothing, so the script reads it from the config.
            # test_tokens is test_perplexity's alone.
            training={k: v for k, v in config["training"].items()
                      if k not in ("device", "save_every_batches", "test_tokens")},
            device=config["training"]["device"],
            resume="results/models/{model}/resume.pt",
        ),
    threads: config["training"]["threads"]
    log:
        log_path("train_lstm", "{model}"),
    benchmark:
        benchmark_path("train_lstm", "{model}")
    resources:
        mem_mb=4000,
        runtime=60 * 24,
        gpu=0 if config["training"]["device"] == "cpu" else 1,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/train_lstm.py"


# Memory of a test evaluation: the checkpoint's weights twice (loaded, and in the model), 16 bytes a parameter
# with room to spare, and a window's logits.
TEST_MEM_MB = 1000 + (
    16 * MODEL_PARAMETERS
    + 3 * 4 * config["training"]["bptt"] * config["training"]["eval_batch_size"] * VOCABULARY_SIZE
) // 2**20


# The checkpoint on the test split, in a job of its own: training.test_tokens reruns this, not the training.
rule test_perplexity:
    output:
        "results/models/{model}/test.json",
    input:
        checkpoint="results/models/{model}/model.pt",
        split="results/data/wikitext-2/test.txt",
        vocabulary="results/data/vocabulary.json",
        code=lib("test_perplexity"),
    params:
        **named(
            test_tokens=config["training"]["test_tokens"],
            # the evaluation's batching, as the validation's during training
            eval_batch_size=config["training"]["eval_batch_size"],
            bptt=config["training"]["bptt"],
            device=config["training"]["device"],
            threads=config["training"]["threads"],  # on the CPU, the job's threads (it refuses to run with fewer)
        ),
    threads: config["training"]["threads"]
    log:
        log_path("test_perplexity", "{model}"),
    benchmark:
        benchmark_path("test_perplexity", "{model}")
    resources:
        mem_mb=lambda wildcards, attempt: TEST_MEM_MB * attempt,  # doubled on a retry (SLURM profile)
        runtime=30,
        gpu=0 if config["training"]["device"] == "cpu" else 1,
    conda:
        "../../envs/torch.yaml"
    script:
        "../scripts/test_perplexity.py"


rule perplexity_table:
    output:
        table=report("results/tables/perplexity.csv", caption="../report/perplexity.rst", category="Training",
                     subcategory="all models", labels={"figure": "perplexity (CSV)"}),
        png=report("results/figures/perplexity_vs_dropout.png", caption="../report/perplexity.rst", category="Training",
                   subcategory="all models", labels={"figure": "perplexity vs dropout"}),
        svg="results/figures/perplexity_vs_dropout.svg",
    input:
        metrics=expand("results/models/{model}/metrics.json", model=MODELS),
        tests=expand("results/models/{model}/test.json", model=MODELS),
        code=lib("perplexity_table"),
    params:
        dpi=config["figures"]["dpi"],
    log:
        log_path("perplexity_table", "perplexity"),
    resources:
        runtime=5,
        mem_mb=1000,
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/perplexity_table.py"


ALL_TARGETS.extend(rules.perplexity_table.output)
