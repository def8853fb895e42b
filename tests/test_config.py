"""Configuration validation: defaults and one-line errors naming key and allowed values."""
from __future__ import annotations

import copy
import io
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import copy_repo, snakemake
from lstmscope.config import ConfigError, model_name, model_seed, model_specs, validate_config

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
TRAIN_SHA256 = "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f"  # WikiText-2's train split


def default_config() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())


def test_default_config_and_presets_are_valid():
    for path in ["config.yaml", "presets/thesis.yaml", "tests/config/tiny.yaml"]:
        cfg = default_config()
        for key, value in (yaml.safe_load((ROOT / path).read_text()) or {}).items():
            cfg[key] = value if not isinstance(value, dict) or key == "texts" else {**cfg.get(key, {}), **value}
        validate_config(cfg, SCHEMA)


def test_empty_config_gets_thesis_defaults():
    cfg = validate_config({}, SCHEMA)
    assert cfg["architecture"] == {"embedding_size": 400, "hidden_size": 2000, "layers": 2}
    assert cfg["training"]["lr"] == 20.0 and cfg["training"]["bptt"] == 35 and cfg["training"]["clip"] == 0.25
    assert len(cfg["models"]["dropouts"]) == 9


def _set(cfg: dict, dotted: str, value):
    node = cfg
    *parents, last = dotted.split(".")
    for p in parents:
        node = node[p]
    node[last] = value


BAD = [
    ("traning", {"epochs": 1}, "unknown config key 'traning' at the top level; did you mean 'training'? allowed keys: ablation, activations, "
                             "architecture"),
    ("training.epoch", 3, "unknown config key 'epoch' in training; did you mean 'epochs'? allowed keys: batch_size, bptt, clip"),
    ("figures.colormap", "RdBu", "unknown config key 'colormap' in figures; allowed keys:"),  # nothing close: no guess
    # a section's key at the top level (snakemake --config epochs=3): the sections that have it, and how to set it
    ("epochs", 3, "unknown config key 'epochs' at the top level; did you mean training.epochs? (in YAML under "
                  "training:, on the command line --config 'training={epochs: 3}'); allowed keys: ablation,"),
    ("dpi", 200, "unknown config key 'dpi' at the top level; did you mean figures.dpi? (in YAML under figures:, on the "
                 "command line --config 'figures={dpi: 200}'); allowed keys:"),
    ("training.lr", -1, "config key training.lr: -1 is out of range; must be > 0"),
    ("training.epochs", "ten", "config key training.epochs: 'ten' is not of type integer"),
    ("training.device", "tpu", "config key training.device: 'tpu' is not allowed; choose one of ['auto', 'cpu', 'cuda']"),
    ("models.dropouts", [0.1, 1.5], "config key models.dropouts.1: 1.5 is out of range; must be < 1"),
    ("models.dropouts", [], "config key models.dropouts: [] should be non-empty"),
    ("models.dropouts", [0.1, 0.1], "config key models.dropouts: [0.1, 0.1] has non-unique elements"),
    ("data.sha256.train", "abc",
     "config key data.sha256.train: 'abc' is not a SHA-256 checksum (64 hexadecimal digits, in lower case)"),
    ("texts", {"test": {"split": "test", "tokens": 100}, "test_2": {"split": "valid", "tokens": 100}},
     "config key texts: 'test_2' is not a text's name: a letter, then letters, digits or '-'"),
    ("architecture.layers", 0, "config key architecture.layers: 0 is out of range; must be >= 1"),
    ("texts.test.split", "dev", "config key texts.test.split: 'dev' is not allowed; choose one of ['train', 'valid', 'test']"),
    ("heatmap.scale", "linear", "config key heatmap.scale: 'linear' is not allowed; choose one of ['median', 'symmetric', 'range']"),
    ("heatmap.expectancy_floor", 0, "config key heatmap.expectancy_floor: 0 is out of range; must be > 0"),
    ("heatmap.expectancy_floor", 1, "config key heatmap.expectancy_floor: 1 is out of range; must be < 1"),
    ("heatmap.expectancy_floor", "low", "config key heatmap.expectancy_floor: 'low' is not of type number or null"),
    ("activations.dtype", "float64", "config key activations.dtype: 'float64' is not allowed; choose one of ['float32', 'float16']"),
    ("histogram.cell_range", [2.0, -2.0], "config key histogram.cell_range: [2.0, -2.0] must be [low, high] with low < high"),
    ("embedding.dropouts", [0.95], "config key embedding.dropouts: 0.95 is not among models.dropouts"),
    ("neuron_explorer.texts", ["dev"], "config key neuron_explorer.texts: 'dev' is not a text of texts (test, train)"),
    ("neuron_explorer.neurons", 0, "config key neuron_explorer.neurons: 0 is out of range; must be >= 1"),
    ("neuron_explorer.ablation", "sometimes", "config key neuron_explorer.ablation: 'sometimes' is not of type boolean"),
    ("ablation.dropouts", [0.35], "config key ablation.dropouts: 0.35 is not among models.dropouts"),
    ("ablation.dropouts", [], "config key ablation.dropouts: [] should be non-empty"),
    ("ablation.texts", ["dev"], "config key ablation.texts: 'dev' is not a text of texts (test, train)"),
    ("ablation.state", "o", "config key ablation.state: 'o' is not allowed; choose one of ['h', 'c']"),
    ("ablation.neurons", 61, "config keys ablation.neurons + ablation.random = 65: more than the 64 neurons"),
    ("ablation.random", 0, None),
    ("embedding.layers", [3], "config key embedding.layers: layer 3 does not exist; architecture.layers is 2"),
    ("context_use.dropouts", [0.35], "config key context_use.dropouts: 0.35 is not among models.dropouts"),
    ("context_use.texts", ["dev"], "config key context_use.texts: 'dev' is not a text of texts (test, train)"),
    ("context_use.lengths", [], "config key context_use.lengths: [] should be non-empty"),
    ("context_use.lengths", [0, 5], "config key context_use.lengths.0: 0 is out of range; must be >= 1"),
    ("context_use.lengths", [5, 5], "config key context_use.lengths: [5, 5] has non-unique elements"),
    ("context_use.positions", 1, "config key context_use.positions: 1 is out of range; must be >= 2"),
    ("context_use.tolerance", 0, "config key context_use.tolerance: 0 is out of range; must be > 0"),
    ("context_use.lengths", [1, 17999], "config key context_use.lengths: a context of 17999 words leaves text test "
                                        "(18000 tokens) too few words to predict after it; texts.test.tokens must be "
                                        "at least 18001, or lower the lengths, or leave test out of "
                                        "context_use.texts"),
    ("cluster.distance_threshold", 2.5, "config keys cluster.n_clusters and cluster.distance_threshold: set exactly one"),
    ("vocabulary.max_size", "big", "config key vocabulary.max_size: 'big' is not of type integer or null"),
    ("vocabulary.max_size", 1, "config key vocabulary.max_size: 1 is out of range; must be >= 2"),
    # valid alone, refused by a job later: checked before any job runs
    ("histogram.bin_width", 0.03, "config key histogram.bin_width: 0.03 does not divide the interval of h, [-1.0, 1.0], "
                                  "into whole bins"),
    ("histogram.cell_range", [-10, 10.005], "config key histogram.bin_width: 0.01 does not divide the interval of "
                                            "histogram.cell_range, [-10.0, 10.005], into whole bins"),
    # below 1/3 openTSNE found no neighbour ("Expected n_neighbors > 0. Got 0") after the run began
    ("embedding.perplexity", 0.3, "config key embedding.perplexity: 0.3 is too small: openTSNE looks at 3 x perplexity "
                                  "neighbours of each point, at least 1; at least 1/3"),
    ("embedding.max_tokens", 50, "config key embedding.perplexity: 30.0 is too large for the 50 tokens embedded of text "
                                 "test (embedding.max_tokens, texts.test.tokens); at most 16.3"),
    ("cluster.n_clusters", 4001, "config key cluster.n_clusters: 4001 is more than the 4000 tokens embedded of text test"),
    ("cluster.ward_max_points", 3999, "config key cluster.ward_max_points: 3999 is fewer than the 4000 tokens embedded "
                                      "of text test, which ward linkage would refuse"),
    ("training.test_tokens", 19, "config key training.test_tokens: 19 is too few for training.eval_batch_size 10; at "
                                 "least 20"),
    ("training.train_tokens", 39, "config key training.train_tokens: 39 is too few for training.batch_size 20; at least 40"),
    ("histogram.bin_width", 1e-5, "config keys histogram.bin_width, histogram.cell_range: 1e-05 wide bins on [-1.0, 1.0] "
                                  "(h) are 200000 bins per neuron; at most 100000"),
    ("histogram.cell_range", [-1e300, 1e300], "config keys histogram.bin_width, histogram.cell_range: 0.01 wide bins on "
                                              "[-1e+300, 1e+300] (histogram.cell_range) are 2e+302 bins per neuron; "
                                              "at most 100000"),
    # bins beyond a float: was an OverflowError's traceback
    ("histogram.cell_range", [-1e308, 1e308], "config keys histogram.bin_width, histogram.cell_range: 0.01 wide bins "
                                              "on [-1e+308, 1e+308] (histogram.cell_range) are more than a float "
                                              "counts bins per neuron; at most 100000"),
    ("histogram.bin_width", 1e-310, "config keys histogram.bin_width, histogram.cell_range: 1e-310 wide bins on "
                                    "[-1.0, 1.0] (h) are more than a float counts bins per neuron"),
    # not finite: a schema range check passes NaN, which would make no neuron dead, no rate a number
    ("training.lr", float("nan"), "config key training.lr: nan is not a finite number"),
    ("divergence.dead_fraction", float("nan"), "config key divergence.dead_fraction: nan is not a finite number"),
    ("data.timeout_s", float("inf"), "config key data.timeout_s: inf is not a finite number"),
    ("models.dropouts", [0.0, float("nan")], "config key models.dropouts.1: nan is not a finite number"),
    ("histogram.cell_range", [float("-inf"), 10.0], "config key histogram.cell_range.0: -inf is not a finite number"),
    ("texts", {5: {"split": "test", "tokens": 100}}, "config key texts: the key 5 is not text; keys are names"),
    ("embedding.layers", [], "config key embedding.layers: [] should be non-empty"),
    ("embedding.states", [], "config key embedding.states: [] should be non-empty"),
    ("embedding.seed", 2**32, "config key embedding.seed: 4294967296 is out of range; must be <= 4294967295"),
    ("divergence.top_k", 65, "config key divergence.top_k: 65 is more than the 64 neurons of a layer"),
    ("divergence.track", 65, "config key divergence.track: 65 is more than the 64 neurons of a layer"),
    ("divergence.rank_by", "kl", "config key divergence.rank_by: 'kl' is not allowed; choose one of ['kl_sum', 'kl_pq', 'kl_qp']"),
    ("cluster.shuffles", 1, "config key cluster.shuffles: 1 is out of range; must be >= 2"),
    ("heatmap.neurons", 65, "config key heatmap.neurons: 65 is more than the 64 neurons of a layer"),
    ("neuron_explorer.neurons", 65, "config key neuron_explorer.neurons: 65 is more than the 64 neurons of a layer"),
    ("probe.kl_neurons", 65, "config key probe.kl_neurons: 65 is more than the 64 neurons of a layer"),
    ("data.url", "ftp://example.org/wikitext-2", "config key data.url: 'ftp://example.org/wikitext-2' has the scheme "
                                                 "'ftp'; use http(s)://, file:// or a directory"),
    ("data.url", "  ", "config key data.url: '  ' is blank"),
    ("data.retries", 11, "config key data.retries: 11 is out of range; must be <= 10"),
    ("figures.highlight_word", "two words", "config key figures.highlight_word: 'two words' is not one word"),
    # a line break a YAML block | keeps, which a schema pattern ending in $ passes: a text named "abc\n" made file
    # names with a line break, and a checksum with one would have failed the download after the run began
    ("figures.highlight_word", "word\n", "config key figures.highlight_word: 'word\\n' holds a line break or another "
                                        "control character (a YAML block | keeps its last line break"),
    ("data.sha256.train", f"{TRAIN_SHA256}\n", f"config key data.sha256.train: '{TRAIN_SHA256}\\n' holds a line break"),
    ("texts", {"abc\n": {"split": "test", "tokens": 100}}, "config key texts: the key 'abc\\n' holds a line break"),
    ("figures.highlight_word", "a\tb", "config key figures.highlight_word: 'a\\tb' holds a line break or another"),
    ("figures.highlight_word", "a\u2028b", "config key figures.highlight_word: 'a\\u2028b' holds a line break"),
    ("figures.highlight_word", "a\x85b", "config key figures.highlight_word: 'a\\x85b' holds a line break"),  # C1
    # YAML 1.1's booleans: texts: {on: ...}, highlight_word: no
    ("texts", {True: {"split": "test", "tokens": 100}}, "config key texts: the key true is not text; keys are names "
                                                        "(YAML reads an unquoted on, off, yes or no as true or false: "
                                                        "quote the name)"),
    ("figures.highlight_word", False, "config key figures.highlight_word: false is not of type string; YAML reads an "
                                      "unquoted yes, no, on or off as true or false: quote the word"),
    # a text's name is part of file names: a 250-character one passed and failed the dump (file name too long)
    ("texts", {"t" * 65: {"split": "test", "tokens": 100}},
     f"config key texts: '{'t' * 65}' is not a text's name: a letter, then letters, digits or '-', 64 characters at "
     "most"),
    ("models.replicates", 101, "config key models.replicates: 101 is out of range; must be <= 100"),  # (10**9 hung)
    ("training.lr", 10**400, "config key training.lr: 1000000000"),  # an int too large for a float: no traceback
    ("models.dropouts", [0.0, 5e-324], "config key models.dropouts: 5e-324 is below 1e-06"),
    ("data.url", "gopher://example.org/x", "config key data.url: 'gopher://example.org/x' has the scheme 'gopher'"),
    # null, true and false as YAML writes them, not Python's None, True, False
    ("training", None, "config key training: null is not of type object"),
    ("models.dropouts", [True, 0.5], "config key models.dropouts.0: true is not of type number"),
    ("activations.dtype", None, "config key activations.dtype: null is not of type string"),
]


def test_one_checksum_for_two_splits_is_refused():
    """One file cannot be two splits: the download would fetch the second, retry and fail on its checksum."""
    cfg = default_config()
    cfg["data"]["sha256"]["valid"] = cfg["data"]["sha256"]["train"]
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, SCHEMA)
    assert str(err.value) == ("config key data.sha256: train and valid have the same checksum; each split is a file "
                              "of its own")


@pytest.mark.parametrize("key,value,message", BAD, ids=[f"{b[0]}={b[1]!r}"[:60] for b in BAD])
def test_bad_config_is_one_line_error_naming_the_key(key, value, message):
    cfg = default_config()
    if key == "traning":
        cfg[key] = value
    else:
        _set(cfg, key, value)
    if message is None:  # ablation.random 0 is fine alone; with ablation.neurons 0 nothing is left to remove
        validate_config(copy.deepcopy(cfg), SCHEMA)
        _set(cfg, "ablation.neurons", 0)
        message = "config keys ablation.neurons and ablation.random: both are 0"
    with pytest.raises(ConfigError) as err:
        validate_config(copy.deepcopy(cfg), SCHEMA)
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_expectancy_floor_defaults_to_one_in_a_million_and_null_is_each_figures_own():
    cfg = default_config()
    del cfg["heatmap"]["expectancy_floor"]
    assert validate_config(cfg, SCHEMA)["heatmap"]["expectancy_floor"] == 1e-6
    cfg["heatmap"]["expectancy_floor"] = None
    assert validate_config(cfg, SCHEMA)["heatmap"]["expectancy_floor"] is None


def test_fewer_models_name_every_list_of_models_left_behind_in_one_message():
    """Training fewer models leaves the embedded, explored and ablated lists behind: one run, one error for all."""
    cfg = default_config()
    cfg["models"]["dropouts"] = [0.0, 0.5]
    cfg["ablation"]["dropouts"] = [0.0, 0.3, 0.6]
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, SCHEMA)
    explored = ", ".join(str(d) for d in cfg["neuron_explorer"]["dropouts"] if d not in (0.0, 0.5))
    assert str(err.value) == (
        f"config key embedding.dropouts: 0.8 is not among models.dropouts [0.0, 0.5]; nor is {explored} of "
        "neuron_explorer.dropouts; nor are 0.3, 0.6 of ablation.dropouts")


def test_null_embeds_and_explores_every_model_as_it_ablates_every_model(tmp_path):
    """embedding.dropouts and neuron_explorer.dropouts take null for every model, as ablation.dropouts and
    context_use.dropouts do (null was refused: "null is not of type array"); the checks of what is embedded count
    null as models embedded, and a dry run plans every model's maps and pages."""
    from conftest import parse_job_stats

    cfg = default_config()
    cfg["embedding"]["dropouts"] = cfg["neuron_explorer"]["dropouts"] = None
    validate_config(cfg, SCHEMA)
    cfg = default_config()
    cfg["embedding"]["dropouts"], cfg["embedding"]["max_tokens"] = None, 50
    with pytest.raises(ConfigError, match="^config key embedding.perplexity: 30.0 is too large for the 50 tokens"):
        validate_config(cfg, SCHEMA)
    cfg["embedding"]["dropouts"] = []  # (an empty list embeds nothing: nothing to check)
    validate_config(cfg, SCHEMA)
    work = copy_repo(tmp_path / "work")
    models = len(default_config()["models"]["dropouts"])
    for section, rule, per_model in (("embedding", "embed_tsne", 4), ("neuron_explorer", "neuron_explorer", 1)):
        r = snakemake(work, "-n", "--quiet", "rules", "--config", f"{section}={{dropouts: null}}", timeout=180)
        assert parse_job_stats(r.stdout + r.stderr)[rule] == models * per_model, r.stdout[-3000:]


def test_a_text_set_to_null_is_left_out_and_the_lists_it_leaves_behind_are_named_in_one_message():
    cfg = default_config()
    assert sorted(cfg["texts"]) == ["test", "train"]
    cfg["texts"]["train"] = None
    assert list(validate_config(cfg, SCHEMA)["texts"]) == ["test"]
    cfg = default_config()
    cfg["texts"]["test"] = None
    cfg["texts"]["dev"] = {"split": "valid", "tokens": 500}
    cfg["neuron_explorer"]["texts"] = ["test", "dev"]
    cfg["ablation"]["texts"] = ["dev", "test", "gone"]
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, SCHEMA)
    assert str(err.value) == ("config key embedding.texts: 'test' is not a text of texts (train, dev); nor is 'test' "
                              "of neuron_explorer.texts; nor are 'test', 'gone' of ablation.texts; nor is 'test' of "
                              "context_use.texts")
    cfg = default_config()
    cfg["texts"] = {"test": None, "train": None}
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, SCHEMA)
    assert str(err.value) == ("config key texts: every text is set to null (test, train); at least one analysis "
                              "text is needed")


def test_a_config_file_leaves_out_a_text_of_config_yaml_by_setting_it_to_null(tmp_path):
    """A --configfile is merged over config.yaml key by key: leaving a text out of it keeps config.yaml's, null drops
    it, and no job of that text is planned."""
    work = copy_repo(tmp_path / "work")
    mine = tmp_path / "mine.yaml"
    plans = {}
    for name, text in (("kept", "texts:\n  dev: {split: valid, tokens: 500}\n"),
                       ("dropped", "texts:\n  dev: {split: valid, tokens: 500}\n  train: null\n")):
        mine.write_text(text)
        r = snakemake(work, "-n", "--configfile", str(mine), timeout=180)
        plans[name] = {t for t in ("test", "train", "dev")
                       if re.search(rf"results/activations/d0\.0_r0/{t}\.h5", r.stdout + r.stderr)}
    assert plans == {"kept": {"test", "train", "dev"}, "dropped": {"test", "dev"}}
    # a misspelt name leaves out nothing: refused, rather than every job of the text meant being run
    for given in (["--configfile", str(mine)], ["--config", "texts={trian: null}"]):
        mine.write_text("texts:\n  trian: null\n")
        r = snakemake(work, "-n", *given, check=False, timeout=180)
        assert r.returncode != 0 and ("invalid configuration: config key texts.trian: null leaves out no text: no "
                                      "config file names a text 'trian' (its texts: test, train); did you mean "
                                      "'train'?") in r.stdout + r.stderr, r.stdout[-2000:]
    assert not (work / "results").exists()


def test_a_data_url_read_as_a_missing_folder_is_refused_where_the_download_is_to_run(tmp_path):
    """A web address typed without https:// (or with one slash) is read as a folder: the dry run passed and the
    download failed after the run began, naming no key. Refused before any job where the splits are still to be
    downloaded; a folder or file:// URL that exists, and any web address, pass; where the splits are there, the url
    is not read."""
    from lstmscope.config import check_data_folder

    typo = "raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2"
    for url in (typo, "https:/raw.githubusercontent.com/x", f"file://{tmp_path}/none"):
        with pytest.raises(ConfigError, match=f"^config key data.url: {re.escape(repr(url))} is read as a folder of "
                                              r"this machine, and there is none; a web address needs its scheme"):
            check_data_folder(url)
    for url in (str(tmp_path), f"file://{tmp_path}", "https://example.org/none", "http://localhost:1/x"):
        check_data_folder(url)
    # a folder must hold the splits' files, and a file is no folder (both failed the download after the run began)
    splits = ["train.txt", "valid.txt", "test.txt"]
    (tmp_path / "test.txt").write_text(" the text .\n")
    with pytest.raises(ConfigError, match=f"^config key data.url: the folder {re.escape(repr(str(tmp_path)))} holds no "
                                          "train.txt, valid.txt; name the folder that holds train.txt, valid.txt, "
                                          "test.txt$"):
        check_data_folder(str(tmp_path), splits)
    with pytest.raises(ConfigError, match=f"^config key data.url: {re.escape(repr(str(tmp_path / 'test.txt')))} is a "
                                          "file; name the folder that holds train.txt, valid.txt, test.txt$"):
        check_data_folder(str(tmp_path / "test.txt"), splits)
    for name in splits:
        (tmp_path / name).write_text(" the text .\n")
    check_data_folder(f"file://{tmp_path}", splits)
    work = copy_repo(tmp_path / "work")
    r = snakemake(work, "-n", "--config", f"data={{url: '{typo}'}}", check=False, timeout=180)
    assert r.returncode != 0 and f"invalid configuration: config key data.url: '{typo}' is read as a folder" in \
        r.stdout + r.stderr, r.stdout[-2000:]
    r = snakemake(work, "-n", "--config", f"data={{url: '{work}'}}", check=False, timeout=180)  # no splits there
    assert r.returncode != 0 and f"config key data.url: the folder '{work}' holds no train.txt, valid.txt, test.txt" \
        in r.stdout + r.stderr, r.stdout[-2000:]
    data = work / "results" / "data" / "wikitext-2"
    data.mkdir(parents=True)
    for split in ("train", "valid", "test"):
        (data / f"{split}.txt").write_text(" the text .\n")
    snakemake(work, "-n", "--config", f"data={{url: '{typo}'}}", timeout=180)  # downloaded already: not read


def test_a_text_set_to_null_must_be_one_a_config_file_names(tmp_path):
    """check_config_files reads the texts each file gives an entry (not null); validate_config refuses a null that
    none gives, and leaves one out that a file before gives."""
    from lstmscope.config import check_config_files

    mine, other = tmp_path / "mine.yaml", tmp_path / "other.yaml"
    mine.write_text("texts:\n  dev: {split: valid, tokens: 500}\n  train: null\n")
    other.write_text("texts:\n  dev: null\n")
    given = check_config_files([ROOT / "config.yaml", mine, other])
    assert given == {"test", "train", "dev"}
    cfg = default_config()
    cfg["texts"].update(dev=None, train=None)  # as merged: mine, then other
    assert sorted(validate_config(cfg, SCHEMA, texts_given=given)["texts"]) == ["test"]
    cfg = default_config()
    cfg["texts"]["dve"] = None
    with pytest.raises(ConfigError, match=r"^config key texts.dve: null leaves out no text: no config file names a "
                                          r"text 'dve' \(its texts: dev, test, train\); did you mean 'dev'\?$"):
        validate_config(cfg, SCHEMA, texts_given=given)
    assert check_config_files([ROOT / "config.yaml", tmp_path / "none.yaml"]) is None  # unknown: not checked


def test_no_embedding_limit_embeds_the_whole_text_and_the_checks_count_all_of_it():
    cfg = default_config()
    _set(cfg, "embedding.max_tokens", None)
    assert validate_config(copy.deepcopy(cfg), SCHEMA)["embedding"]["max_tokens"] is None
    _set(cfg, "cluster.ward_max_points", 17999)  # the test text's 18 000 tokens: one too many for ward
    with pytest.raises(ConfigError, match=r"^config key cluster.ward_max_points: 17999 is fewer than the 18000 tokens "
                                          r"embedded of text test, which ward linkage would refuse"):
        validate_config(copy.deepcopy(cfg), SCHEMA)


@pytest.mark.parametrize("layers, given, embedded", [(1, None, [1]), (3, None, [1, 2, 3]), (3, [3, 1], [1, 3])])
def test_embedding_layers_default_to_every_layer(layers, given, embedded):
    """Left null, embedding.layers follows architecture.layers (a one-layer model needs no second edit)."""
    cfg = default_config()
    cfg["architecture"]["layers"] = layers
    cfg["embedding"]["layers"] = given
    assert validate_config(cfg, SCHEMA)["embedding"]["layers"] == embedded
    assert validate_config({"architecture": {"layers": layers}}, SCHEMA)["embedding"]["layers"] == list(range(1, layers + 1))


@pytest.mark.parametrize("name", ["NA", "null", "nan", "None", "True", "false", "inf", "Infinity"])
def test_a_text_name_the_tables_would_not_read_back_is_refused(name):
    # what the pipeline's CSV reader makes of a text column holding only this name
    read_back = pd.read_csv(io.StringIO(f"text,x\n{name},1\n{name},2\n"))["text"].iloc[0]
    assert not (isinstance(read_back, str) and read_back == name)
    cfg = default_config()
    cfg["texts"] = {name: {"split": "test", "tokens": 100}}
    with pytest.raises(ConfigError, match=f"^config key texts.{name}: a CSV table would read the name '{name}' back"):
        validate_config(cfg, SCHEMA)


def test_stability_seeds_are_other_seeds_than_the_maps_and_a_set():
    """embedding.stability_seeds makes more maps of the same states; the reference seed again would be the reference
    map under another name, a seed twice the same map twice."""
    cfg = default_config()
    cfg["embedding"]["stability_seeds"] = [7, 42]
    with pytest.raises(ConfigError, match=r"^config key embedding.stability_seeds: 42 is embedding.seed, the seed of "
                                          r"the map every other output shows; list only other seeds$"):
        validate_config(cfg, SCHEMA)
    cfg = default_config()
    cfg["embedding"]["stability_seeds"] = [7, 7]
    with pytest.raises(ConfigError, match=r"^config key embedding\.stability_seeds: \[7, 7\] has non-unique elements$"):
        validate_config(cfg, SCHEMA)
    cfg = default_config()
    cfg["embedding"]["stability_seeds"] = list(range(100, 109))  # a marker each in the figure: at most 8
    with pytest.raises(ConfigError, match=r"^config key embedding\.stability_seeds: \[100, 101, 102, 103, 104, 105, "
                                          r"106, 107, 108\] has 9 items; at most 8$"):
        validate_config(cfg, SCHEMA)
    cfg = default_config()
    cfg["embedding"].update(seed=1, stability_seeds=[])  # none: no other map (config.yaml's 1 is free then)
    assert validate_config(cfg, SCHEMA)["embedding"]["stability_seeds"] == []


def test_text_names_that_differ_only_in_case_are_refused():
    """results/activations/<model>/Test.h5 and test.h5 are one file where names ignore case (macOS, Windows)."""
    cfg = default_config()
    cfg["texts"] = {"test": {"split": "test", "tokens": 200}, "Test": {"split": "train", "tokens": 200}}
    with pytest.raises(ConfigError, match="^config key texts.Test: the text 'test' differs from it only in case"):
        validate_config(cfg, SCHEMA)
    cfg["texts"] = {"test": {"split": "test", "tokens": 200}, "Test2": {"split": "train", "tokens": 200}}
    validate_config(cfg, SCHEMA)  # names that differ otherwise are two texts


def test_a_plain_directory_may_hold_the_url_separator(tmp_path):
    """A directory whose path holds "://" (no scheme before it) is accepted, and the download reads it."""
    import hashlib

    from lstmscope.download import download_files

    folder = tmp_path / "runs:" / "old" / "wikitext-2"  # the path tmp_path/runs://old/wikitext-2 names
    folder.mkdir(parents=True)
    (folder / "test.txt").write_bytes(b" = Robert Boulter = \n")
    url = f"{tmp_path}/runs://old/wikitext-2"
    cfg = default_config()
    cfg["data"]["url"] = url
    validate_config(cfg, SCHEMA)
    out = tmp_path / "got" / "test.txt"
    download_files(url, {"test.txt": hashlib.sha256(b" = Robert Boulter = \n").hexdigest()}, {"test.txt": out})
    assert out.read_bytes() == b" = Robert Boulter = \n"


def test_text_names_that_merely_resemble_those_are_accepted():
    names = ["Nation", "nulls", "test", "none-2", "Inferno", "t", "truefalse"]
    for name in names:  # read back as they are, so accepted
        assert pd.read_csv(io.StringIO(f"text,x\n{name},1\n{name},2\n"))["text"].iloc[0] == name
    cfg = default_config()
    cfg["texts"] = {name: {"split": "test", "tokens": 200} for name in names}
    for section in ("embedding", "neuron_explorer", "ablation", "context_use"):
        cfg[section]["texts"] = ["test"]
    validate_config(cfg, SCHEMA)


def test_seeds_are_derived_stably():
    cfg = validate_config(default_config(), SCHEMA)
    specs = model_specs(cfg)
    assert [s.name for s in specs][:2] == ["d0.0_r0", "d0.1_r0"]
    assert len({s.seed for s in specs}) == len(specs)
    # adding another dropout value never changes an existing model's seed
    cfg["models"]["dropouts"] = [0.9] + cfg["models"]["dropouts"]
    again = {s.name: s.seed for s in model_specs(cfg)}
    assert all(again[s.name] == s.seed for s in specs)
    assert model_seed(1111, 0.1, 0) != model_seed(1112, 0.1, 0)
    assert model_name(0.25, 1) == "d0.25_r1"


def test_replicates_are_models_of_their_own_seeds():
    cfg = validate_config(default_config(), SCHEMA)
    cfg["models"]["replicates"] = 3
    specs = model_specs(cfg)
    dropouts = cfg["models"]["dropouts"]
    assert len(specs) == 3 * len(dropouts)
    assert [s.name for s in specs][:3] == ["d0.0_r0", "d0.0_r1", "d0.0_r2"]
    assert {(s.dropout, s.replicate) for s in specs} == {(d, r) for d in dropouts for r in range(3)}
    assert len({s.seed for s in specs}) == len(specs)  # no two replicates train the same model
    assert model_seed(1111, 0.1, 0) != model_seed(1111, 0.1, 1)
    # a second and third replicate leave the first replicate's seeds (and so its models) as they were
    first = {s.name: s.seed for s in model_specs(validate_config(default_config(), SCHEMA))}
    assert all(first[s.name] == s.seed for s in specs if s.replicate == 0)


def test_snakemake_stops_before_any_job_with_the_message(tmp_path):
    work = copy_repo(tmp_path / "work")  # not the checkout: its own results must not matter
    bad = tmp_path / "bad.yaml"
    bad.write_text("training:\n  lr: 0\n")
    r = snakemake(work, "-n", "--configfile", str(bad), check=False, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "invalid configuration: config key training.lr: 0 is out of range; must be > 0" in out
    assert "Job stats" not in out
    bad.write_text("training:\n  epochs: 3\ntraining:\n  lr: 5\n")  # a key twice: the file is read for it too
    r = snakemake(work, "-n", "--configfile", str(bad), check=False, timeout=120)
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "Job stats" not in out
    assert f"invalid configuration: {bad}, line 3: key 'training' given twice (first on line 1)" in out


# --------------------------------------------------------------------------- the README's configuration table

def _readme_config_rows() -> list[tuple[list[str], str]]:
    """(full keys, default cell) of every row of the README's configuration table."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    table = text.split("| key | default config | meaning |", 1)[1].split("\n\n", 1)[0]
    rows = []
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        specs = [s.strip("`") for s in cells[0].split(", ")]
        keys, prefix = [], None
        for spec in specs:
            if spec.startswith("."):  # relative to the first key's parent: `ablation.dropouts`, `.texts`
                spec = prefix + spec
            prefix = spec.rsplit(".", 1)[0]
            if "{" in spec:  # training.{lr,clip} -> training.lr, training.clip
                head, rest = spec.split("{", 1)
                names, tail = rest.split("}", 1)
                keys += [head + n + tail for n in names.split(",")]
            else:
                keys.append(spec)
        rows.append((keys, cells[1]))
    return rows


def _schema_keys(schema: dict, prefix: str = "") -> list[str]:
    keys = []
    for name, sub in schema.get("properties", {}).items():
        key = prefix + name
        if "properties" in sub and sub.get("additionalProperties", True) is False:
            keys += _schema_keys(sub, key + ".")
        elif "additionalProperties" in sub and isinstance(sub["additionalProperties"], dict):
            keys.append(key + ".<name>")  # texts.<name>: any number of named entries
        else:
            keys.append(key)
    return keys


def _top_level_split(cell: str) -> list[str]:
    """'[0.0, 0.8], [test], 8' -> ['[0.0, 0.8]', '[test]', '8'] (commas inside brackets stay)."""
    parts, depth, current = [], 0, ""
    for ch in cell:
        depth += ch in "[{(" and 1 or (ch in "]})" and -1 or 0)
        if ch == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += ch
    return parts + [current.strip()]


def test_readme_configuration_table_documents_every_key_with_the_default_configs_value():
    rows = _readme_config_rows()
    documented = [k for keys, _ in rows for k in keys]
    schema = yaml.safe_load(SCHEMA.read_text())
    wanted = _schema_keys(schema)
    assert sorted(set(wanted) - set(documented)) == [], "config keys the README's table does not document"
    assert sorted(set(documented) - set(wanted)) == [], "keys in the README's table that the schema does not have"
    assert len(documented) == len(set(documented)), "a key documented twice"
    config = default_config()
    described = {"data.url", "data.sha256.train", "data.sha256.valid", "data.sha256.test", "models.dropouts",
                 "texts.<name>"}  # defaults given in words, checked by hand
    checked = 0
    for keys, cell in rows:
        if set(keys) <= described:
            continue
        values = _top_level_split(cell.replace("`", "").replace("−", "-"))
        assert len(values) == len(keys), f"README: {keys} lists {len(values)} defaults: {cell!r}"
        for key, value in zip(keys, values):
            value = value.split(" (")[0]  # "null (every model)", "6000 (thesis preset: null)"
            actual = config
            for part in key.split("."):
                actual = actual[part]
            parsed = yaml.safe_load(value)
            if isinstance(parsed, str) and isinstance(actual, float):
                parsed = float(parsed)  # 1e-10: YAML 1.1 reads it as a string
            assert parsed == actual, f"README gives {key} the default {value!r}; config.yaml: {actual!r}"
            checked += 1
    assert checked >= 50


def test_command_line_values_are_read_as_the_schemas_types():
    """``--config`` values nested in a section reach the workflow as text (Snakemake's own parser, used here):
    they are read as the schema's types, the same config as the one written in a file."""
    from snakemake.cli import parse_config
    from snakemake.utils import update_config

    args = ["heatmap={neurons: 5, scale: range, passage_tokens: 40.0}", "histogram={cell_range: [-5, 5.5]}",
            "divergence={epsilon: 1e-9}", "cluster={n_clusters: null, distance_threshold: 2.5}",
            "neuron_explorer={dropouts: [0.0, 0.3], ablation: off}", "ablation={max_tokens: }",
            "texts={extra: {split: valid, offset: 10, tokens: 500}, train: null}", "figures={highlight_word: '1'}",
            "embedding={layers: null}"]
    given = parse_config(args)
    assert given["heatmap"]["neurons"] == "5" and given["histogram"]["cell_range"] == ["-5", "5.5"]  # as text
    from_command_line = default_config()
    from_command_line["embedding"]["layers"] = [2]  # as a config file might say; --config's null: every layer
    update_config(from_command_line, given)  # as Snakemake merges --config over the config file
    validate_config(from_command_line, SCHEMA, command_line=given)
    in_file = default_config()
    for section, values in yaml.safe_load("""
        heatmap: {neurons: 5, scale: range, passage_tokens: 40.0}
        histogram: {cell_range: [-5, 5.5]}
        divergence: {epsilon: 1.0e-9}
        cluster: {n_clusters: null, distance_threshold: 2.5}
        neuron_explorer: {dropouts: [0.0, 0.3], ablation: off}
        ablation: {max_tokens: }
        texts: {extra: {split: valid, offset: 10, tokens: 500}, train: null}
        figures: {highlight_word: '1'}
        embedding: {layers: null}""").items():
        in_file[section].update(values)
    validate_config(in_file, SCHEMA)
    assert from_command_line == in_file
    assert type(from_command_line["heatmap"]["neurons"]) is int and from_command_line["figures"]["highlight_word"] == "1"
    assert type(from_command_line["heatmap"]["passage_tokens"]) is int  # 40.0 where a count is wanted: 40
    assert from_command_line["ablation"]["max_tokens"] is None
    assert sorted(from_command_line["texts"]) == ["extra", "test"]  # train: null leaves it out
    # a threshold per linkage: a mapping inside the section, read as numbers too
    per_linkage = parse_config(["cluster={n_clusters: null, distance_threshold: {single: 2, ward: 60.5}}"])
    cfg = default_config()
    update_config(cfg, per_linkage)
    validate_config(cfg, SCHEMA, command_line=per_linkage)
    assert cfg["cluster"]["distance_threshold"] == {"single": 2, "ward": 60.5}
    assert from_command_line["neuron_explorer"]["ablation"] is False
    assert from_command_line["embedding"]["layers"] == [1, 2]
    # text that is not a value of the wanted type is still refused, naming the key
    for arg, message in (("heatmap={neurons: five}", "config key heatmap.neurons: 'five' is not of type integer"),
                         ("heatmap={neurons: 2.5}", "config key heatmap.neurons: '2.5' is not of type integer"),
                         ("neuron_explorer={ablation: maybe}", "config key neuron_explorer.ablation: 'maybe' is not of type boolean")):
        config, given = default_config(), parse_config([arg])
        update_config(config, given)
        with pytest.raises(ConfigError) as err:
            validate_config(config, SCHEMA, command_line=given)
        assert str(err.value) == message


def test_a_number_yaml_reads_as_text_is_refused_saying_how_to_write_it():
    """YAML 1.1 reads 1e-3 (no dot) as text, which the command line's --config accepts as a number: a file's 1e-3
    is refused with the spelling YAML reads as a number."""
    config = default_config()
    config["training"]["lr"] = yaml.safe_load("x: 1e-3")["x"]
    assert config["training"]["lr"] == "1e-3"
    with pytest.raises(ConfigError) as err:
        validate_config(config, SCHEMA)
    assert str(err.value) == ("config key training.lr: '1e-3' is not of type number (YAML reads 1e-3 as text: write "
                              "it 0.001)")
    for text, spelled in (("1e-7", "1.0e-7"), ("5e-5", "5.0e-5"), ("1e20", "1.0e+20")):  # what YAML reads as a number
        config["training"]["lr"] = yaml.safe_load(f"x: {text}")["x"]
        with pytest.raises(ConfigError, match=re.escape(f"(YAML reads {text} as text: write it {spelled})")):
            validate_config(config, SCHEMA)
        assert isinstance(yaml.safe_load(f"x: {spelled}")["x"], float)
    for text, message in (("1e3", "'1e3' is not of type integer (YAML reads 1e3 as text: write it 1000)"),
                          ("25e-1", "'25e-1' is not of type integer")):  # a key that takes an integer: its digits
        config = default_config()
        config["training"]["epochs"] = yaml.safe_load(f"x: {text}")["x"]
        with pytest.raises(ConfigError) as err:
            validate_config(config, SCHEMA)
        assert str(err.value) == f"config key training.epochs: {message}"
    config = default_config()
    for text in ("a: b", "[x", "{", "- 1"):  # quoted text that is no YAML value alone: the plain message, no hint
        config["training"]["lr"] = text
        with pytest.raises(ConfigError) as err:
            validate_config(config, SCHEMA)
        assert str(err.value) == f"config key training.lr: {text!r} is not of type number"


def test_a_key_given_twice_in_a_config_file_is_an_error_naming_file_line_and_key(tmp_path):
    """YAML keeps the last of two `training:` sections and drops the first's settings without a word (Snakemake reads
    the files so): each config file is read once more, refusing a key given twice."""
    from lstmscope.config import check_config_files

    good, twice, nested = tmp_path / "good.yaml", tmp_path / "twice.yaml", tmp_path / "nested.yaml"
    good.write_text("training:\n  epochs: 3\nheatmap:\n  neurons: 5\n")
    twice.write_text("training:\n  epochs: 3\nheatmap:\n  neurons: 5\ntraining:\n  lr: 5\n")
    nested.write_text("training:\n  epochs: 3\n  lr: 5\n  epochs: 4\n")
    check_config_files([ROOT / "config.yaml", ROOT / "presets" / "thesis.yaml", good])
    with pytest.raises(ConfigError) as err:
        check_config_files([good, twice])
    assert str(err.value) == (f"{twice}, line 5: key 'training' given twice (first on line 1); YAML would keep only "
                              "the last one's settings: merge them")
    with pytest.raises(ConfigError, match=r"nested.yaml, line 4: key 'epochs' given twice \(first on line 2\)"):
        check_config_files([nested])
    odd = tmp_path / "odd.yaml"  # a key YAML cannot hash: left to Snakemake's reading (no TypeError here)
    odd.write_text("? [a, b]\n: 1\n")
    with pytest.raises(yaml.constructor.ConstructorError):
        yaml.safe_load(odd.read_text())
    check_config_files([odd])


def test_text_in_a_config_file_is_not_read_as_a_number():
    """Only ``--config`` values arrive as text; a quoted value in a YAML file is text, and refused where a number,
    a boolean or null is wanted (a quoted empty value would otherwise mean null: the whole vocabulary)."""
    for section, key, value, message in (
            ("heatmap", "neurons", "5", "config key heatmap.neurons: '5' is not of type integer"),
            ("vocabulary", "max_size", "", "config key vocabulary.max_size: '' is not of type integer or null"),
            ("neuron_explorer", "ablation", "no", "config key neuron_explorer.ablation: 'no' is not of type boolean")):
        config = default_config()
        config[section][key] = value
        with pytest.raises(ConfigError) as err:
            validate_config(config, SCHEMA)
        assert str(err.value) == message
        # the same text given on the command line is read as YAML reads it
        from_command_line = default_config()
        from_command_line[section][key] = value
        validate_config(from_command_line, SCHEMA, command_line={section: {key: value}})
        assert from_command_line[section][key] == yaml.safe_load(f"x: {value or ''}")["x"]


def test_snakemake_reads_only_command_line_values_as_text(tmp_path):
    work = copy_repo(tmp_path / "work")
    in_file = tmp_path / "quoted.yaml"
    in_file.write_text('heatmap:\n  neurons: "2"\n')
    for args, error in ((["--configfile", str(in_file)], "config key heatmap.neurons: '2' is not of type integer"),
                        (["--config", "heatmap={neurons: 2}"], None)):
        r = snakemake(work, "-n", *args, check=False, timeout=120)
        out = r.stdout + r.stderr
        if error:
            assert r.returncode != 0 and f"invalid configuration: {error}" in out, out
        else:  # the command line's 2 is read as text and converted: a valid config, the whole plan
            assert r.returncode == 0 and "invalid configuration" not in out and "train_lstm" in out, out


def _count_tokens(path: Path) -> int:
    # pytorch/examples' data.py: every line's words and an <eos>
    with open(path, encoding="utf-8") as fh:
        return sum(len(line.split()) + 1 for line in fh)


def test_texts_and_training_tokens_are_checked_against_the_published_splits(wikitext2):
    import hashlib

    from lstmscope.config import PUBLISHED_SPLIT_TOKENS

    cfg = default_config()
    lengths = {}
    for split in ("train", "valid", "test"):
        path = wikitext2 / f"{split}.txt"
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        assert sha == cfg["data"]["sha256"][split]
        lengths[split] = PUBLISHED_SPLIT_TOKENS[sha]
        assert lengths[split] == _count_tokens(path), split
    n = lengths["test"]
    fits = default_config()
    fits["texts"]["test"] = {"split": "test", "offset": 1000, "tokens": n - 1000}
    fits["training"]["valid_tokens"] = lengths["valid"]
    validate_config(fits, SCHEMA)
    too_long = default_config()
    too_long["texts"]["test"] = {"split": "test", "offset": 1000, "tokens": n - 999}
    with pytest.raises(ConfigError, match=rf"^config key texts.test: offset 1000 \+ tokens {n - 999} = {n + 1} is longer "
                                          rf"than split 'test' \({n} tokens\)$"):
        validate_config(too_long, SCHEMA)
    too_many = default_config()
    too_many["training"]["valid_tokens"] = lengths["valid"] + 1
    with pytest.raises(ConfigError, match=rf"^config key training.valid_tokens: {lengths['valid'] + 1} is more than the "
                                          rf"{lengths['valid']} tokens of split 'valid'$"):
        validate_config(too_many, SCHEMA)
    # other files than the published ones: their lengths are not known before the download, the jobs check them
    other = copy.deepcopy(too_long)
    other["data"]["sha256"]["test"] = "0" * 64
    validate_config(other, SCHEMA)


def test_the_fewest_training_tokens_allowed_are_what_batching_needs():
    import torch

    from lstmscope.training import TrainingError, batchify

    for split, batch in (("train", 20), ("valid", 10), ("test", 10)):
        cfg = default_config()
        cfg["training"][f"{split}_tokens"] = 2 * batch
        validate_config(cfg, SCHEMA)
        assert batchify(torch.arange(2 * batch), batch).shape == (2, batch)
        cfg = default_config()
        cfg["training"][f"{split}_tokens"] = 2 * batch - 1
        with pytest.raises(ConfigError, match=f"^config key training.{split}_tokens: {2 * batch - 1} is too few"):
            validate_config(cfg, SCHEMA)
        with pytest.raises(TrainingError, match="too few"):
            batchify(torch.arange(2 * batch - 1), batch)


def test_every_dropout_gets_a_model_name_of_plain_digits():
    """d<dropout>_r<replicate> in plain decimal digits (no exponent, no sign): a folder name, a wildcard value
    (the workflow's model wildcard matches the configured names, test_workflow asks for one) and a name that
    reads back as its dropout."""
    import re

    for dropout in (0.0, -0.0, 0.1, 0.25, 1e-5, 3e-7, 0.7999999999999999, 0.123456789):
        name = model_name(dropout, 0)
        assert re.fullmatch(r"d[0-9]+\.[0-9]+_r[0-9]+", name), name
        assert float(name[1:].split("_r")[0]) == dropout  # the name reads back as the same dropout
    assert model_name(1e-5, 2) == "d0.00001_r2" and model_name(-0.0, 0) == "d0.0_r0"


def test_a_restated_config_gets_one_spelling():
    """Snakemake compares params by repr: the same settings in another key order, with 20 for 20.0, or with
    an unordered list reordered, must become the same config (the rerun test checks the plans)."""
    reference = validate_config(default_config(), SCHEMA)
    restated = default_config()
    restated["training"] = dict(reversed(list(restated["training"].items())))  # keys in another order
    restated["training"]["lr"] = 20  # an int where the schema wants a number
    restated["histogram"]["cell_range"] = [-10, 10]
    restated["models"]["dropouts"] = [0, *restated["models"]["dropouts"][1:]]
    restated["embedding"].update(layers=[2, 1], states=["c", "h"], perplexity=30.0)
    restated["cluster"]["linkages"] = ["ward", "single"]
    restated["embedding"]["stability_seeds"] = list(reversed(restated["embedding"]["stability_seeds"]))
    restated["heatmap"]["neurons"] = 3.0  # a count written as a float
    del restated["texts"]["test"]["offset"]  # a default filled in (at the end of the mapping)
    restated = dict(reversed(list(restated.items())))  # sections in another order
    validate_config(restated, SCHEMA)
    for section in reference:
        assert repr(restated[section]) == repr(reference[section]), section
    assert type(restated["heatmap"]["neurons"]) is int and type(restated["training"]["lr"]) is float
    # config.yaml's sections of the costly stages are already in that spelling: a run of an earlier release keeps
    # its trained models and dumps (embedding.perplexity, written 30, is 30.0 now: the maps are redrawn once)
    written = yaml.safe_load((ROOT / "config.yaml").read_text())
    for section in ("models", "architecture", "training", "texts", "activations", "vocabulary"):
        assert repr(written[section]) == repr(reference[section]), section
    assert written["embedding"]["perplexity"] == 30 and reference["embedding"]["perplexity"] == 30.0


@pytest.mark.parametrize("key", ["heatmap.passage_tokens", "heatmap.expectancy_tokens"])
def test_a_heatmap_passage_longer_than_lstmscope_heatmap_draws_is_refused_before_any_job(key):
    """lstmscope-heatmap refuses more than MAX_TOKENS words as unreadable; unbounded in the schema, such a config
    passed ``snakemake -n`` and the figures were drawn unreadable (or failed) inside the jobs."""
    from lstmscope.heatmap_cli import MAX_TOKENS

    cfg = default_config()
    _set(cfg, key, MAX_TOKENS)
    validate_config(copy.deepcopy(cfg), SCHEMA)
    _set(cfg, key, MAX_TOKENS + 1)
    with pytest.raises(ConfigError) as err:
        validate_config(cfg, SCHEMA)
    assert str(err.value) == f"config key {key}: {MAX_TOKENS + 1} is out of range; must be <= {MAX_TOKENS}"


@pytest.mark.parametrize("value,message", [
    ({"single": 5}, "config key cluster.distance_threshold: {'single': 5} has no threshold for ward (cluster.linkages: "
                    "single, ward); give one per linkage, or one number for all"),
    ({"single": 5, "wrd": 3}, "unknown config key 'wrd' in cluster.distance_threshold; did you mean 'ward'? allowed "
                              "keys: single, ward"),
    ({"single": -1, "ward": 2}, "config key cluster.distance_threshold.single: -1 is out of range; must be > 0"),
    ({"single": 5, "ward": "300m"}, "config key cluster.distance_threshold.ward: '300m' is not of type number"),
    ("x", "config key cluster.distance_threshold: 'x' is not null, number or a mapping"),
    (-2, "config key cluster.distance_threshold: -2 is out of range; must be > 0"),
])
def test_a_distance_threshold_per_linkage_is_checked_in_one_line(value, message):
    cfg = default_config()
    cfg["cluster"].update(n_clusters=None, distance_threshold=value)
    with pytest.raises(ConfigError) as info:
        validate_config(cfg, SCHEMA)
    assert str(info.value) == message


def test_each_linkage_gets_its_own_threshold_or_the_common_one():
    from lstmscope.config import distance_threshold

    for linkages in (["single", "ward"], ["ward"]):  # a threshold for a linkage not clustered is allowed
        cfg = default_config()
        cfg["cluster"].update(n_clusters=None, distance_threshold={"single": 5, "ward": 300}, linkages=linkages)
        validate_config(cfg, SCHEMA)
    setting = cfg["cluster"]["distance_threshold"]
    assert (distance_threshold(setting, "single"), distance_threshold(setting, "ward")) == (5.0, 300.0)
    assert (distance_threshold(2, "ward"), distance_threshold(None, "single")) == (2.0, None)
