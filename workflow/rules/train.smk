# Stage 2: one LSTM language model per dropout x replicate; perplexity table and figure.


rule train_lstm:
    output:
        checkpoint="results/models/{model}/model.pt",
        metrics="results/models/{model}/metrics.json",
    input:
        splits=expand("results/data/wikitext-2/{split}.txt", split=SPLITS),
        vocabulary="results/data/vocabulary.json",
        code=lib("train_lstm"),
    params:
        **named(
            model=train_params,
            architecture=config["architecture"],
            # save_every_batches decides only how often a resume file is written, not the weights (a resumed run
            # is bit-identical): changing it retrains nothing, so the script reads it from the config
            training={k: v for k, v in config["training"].items() if k not in ("device", "save_every_batches")},
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


rule perplexity_table:
    output:
        table=report("results/tables/perplexity.csv", caption="../report/perplexity.rst", category="Training",
                     subcategory="all models", labels={"figure": "perplexity (CSV)"}),
        png=report("results/figures/perplexity_vs_dropout.png", caption="../report/perplexity.rst", category="Training",
                   subcategory="all models", labels={"figure": "perplexity vs dropout"}),
        svg="results/figures/perplexity_vs_dropout.svg",
    input:
        metrics=expand("results/models/{model}/metrics.json", model=MODELS),
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
