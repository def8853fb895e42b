"""The perplexity table and figure: what the perplexities were scored on is in the figure's title; each model's
metrics.json (training) and test.json (test evaluation) are read together."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import matplotlib
import pytest

from lstmscope.perplexity import perplexity_figure, perplexity_table


def metrics(path, model, dropout, valid_tokens, test_tokens, valid_ppl=None, test_ppl=None, replicate=0):
    """A metrics.json as train_lstm writes it (the fields the table reads, and the training settings), and beside it
    (``<stem>.test.json``) the test.json test_perplexity writes for it; returns the metrics.json's path."""
    sha = f"{int(dropout * 10) + 10 * replicate:064d}"
    path.write_text(json.dumps({
        "model": model, "dropout": dropout, "replicate": replicate, "seed": 1 + replicate,
        "valid_ppl": 400.0 + dropout if valid_ppl is None else valid_ppl,
        "epochs": [{}, {}], "best_epoch": 2, "training_seconds": 60.0,
        "provenance": {"training": {"valid_tokens": valid_tokens}, "checkpoint_sha256": sha}}))
    score_file(path).write_text(json.dumps({"model": model, "test_ppl": 420.0 + dropout if test_ppl is None else test_ppl,
                                            "tokens": 20000,
                                      "provenance": {"test_tokens": test_tokens, "checkpoint_sha256": sha}}))
    return path


def score_file(metrics_path):
    """The test.json written beside a metrics.json by :func:`metrics`."""
    return metrics_path.with_name(f"{metrics_path.stem}.test.json")


def table_of(paths):
    return perplexity_table(paths, [score_file(p) for p in paths])


def title(path) -> str:
    """The figure's title, its lines (wrapped within the figure) joined: the texts from its first line to its last."""
    texts = [t.text.strip() for t in ET.parse(path).getroot().iter("{http://www.w3.org/2000/svg}text") if t.text]
    first = next(i for i, t in enumerate(texts) if t.startswith("Perplexity"))
    last = next(i for i, t in enumerate(texts) if i >= first and t.endswith("evaluation)"))
    return " ".join(texts[first:last + 1])


@pytest.mark.parametrize("tokens, said", [
    ((20000, 20000), "(the first 20 000 validation and test tokens; pytorch/examples' evaluation)"),
    ((None, None), "(the whole validation and test splits;"),
    ((5000, None), "(the first 5 000 validation tokens and the whole test split;"),
])
def test_the_figure_says_what_the_perplexities_were_scored_on(tmp_path, tokens, said):
    paths = [metrics(tmp_path / f"m{k}.json", f"d0.{k}_r0", k / 10, *tokens) for k in range(3)]
    table = table_of(paths)
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        perplexity_figure(table, tmp_path / "p.png", tmp_path / "p.svg", dpi=40)
    assert said in title(tmp_path / "p.svg")
    assert list(table["model"]) == ["d0.0_r0", "d0.1_r0", "d0.2_r0"]


def test_the_figure_draws_each_models_perplexities_and_each_dropouts_mean(tmp_path, monkeypatch):
    """Two models at each of two dropouts: a marker per model and split at its dropout and perplexity, and a line
    through each dropout's mean (worked out by hand here)."""
    import lstmscope.perplexity as perplexity

    given = [("d0.0_r0", 0.0, 0, 100.0, 200.0), ("d0.0_r1", 0.0, 1, 110.0, 210.0),
             ("d0.1_r0", 0.1, 0, 120.0, 220.0), ("d0.1_r1", 0.1, 1, 140.0, 260.0)]
    paths = [metrics(tmp_path / f"{m}.json", m, d, 20000, 20000, v, t, r) for m, d, r, v, t in given]
    kept = []
    monkeypatch.setattr(perplexity, "save_figure", lambda fig, *a, **k: kept.append(fig))
    perplexity_figure(table_of(paths), tmp_path / "p.png", tmp_path / "p.svg", dpi=40)
    ax = kept[0].axes[0]
    markers = [line for line in ax.lines if line.get_linestyle() == "None"]
    means = [line for line in ax.lines if line.get_linestyle() == "-"]
    assert [line.get_label() for line in markers] == ["validation", "test"]
    for line, column in zip(markers, (3, 4)):
        assert sorted(zip(line.get_xdata(), line.get_ydata())) == sorted((g[1], g[column]) for g in given)
    assert [list(zip(line.get_xdata(), line.get_ydata())) for line in means] == [[(0.0, 105.0), (0.1, 130.0)],
                                                                                [(0.0, 205.0), (0.1, 240.0)]]
    for marker, mean in zip(markers, means):  # a split's mean line in its markers' colour
        assert mean.get_color() == marker.get_color()


def test_models_scored_on_different_tokens_are_not_given_one_count(tmp_path):
    paths = [metrics(tmp_path / "a.json", "d0.0_r0", 0.0, 20000, 20000),
             metrics(tmp_path / "b.json", "d0.1_r0", 0.1, 10000, 20000)]
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        perplexity_figure(table_of(paths), tmp_path / "p.png", tmp_path / "p.svg", dpi=40)
    shown = title(tmp_path / "p.svg")
    assert "(validation and test split;" in shown and "000" not in shown


def test_a_broken_or_missing_metrics_or_test_file_is_one_error_naming_it(tmp_path):
    whole = metrics(tmp_path / "whole.json", "d0.0_r0", 0.0, 20000, 20000)
    record = json.loads(whole.read_text())
    del record["valid_ppl"]
    (tmp_path / "no_valid.json").write_text(json.dumps(record))
    (tmp_path / "cut.json").write_text(whole.read_text()[:40])
    for name, why in (("no_valid.json", r"KeyError: 'valid_ppl'"), ("cut.json", r"JSONDecodeError"),
                      ("absent.json", r"FileNotFoundError")):
        with pytest.raises(ValueError, match=rf"^{tmp_path / name}: not a complete metrics.json \({why}"):
            perplexity_table([whole, tmp_path / name], [score_file(whole)] * 2)
    scored = json.loads(score_file(whole).read_text())
    del scored["test_ppl"]
    (tmp_path / "no_test.json").write_text(json.dumps(scored))
    (tmp_path / "cut_test.json").write_text(score_file(whole).read_text()[:30])
    for name, why in (("no_test.json", r"KeyError: 'test_ppl'"), ("cut_test.json", r"JSONDecodeError"),
                      ("absent_test.json", r"FileNotFoundError")):
        with pytest.raises(ValueError, match=rf"^{tmp_path / name}: not a complete test.json \({why}"):
            perplexity_table([whole, whole], [score_file(whole), tmp_path / name])
    with pytest.raises(ValueError, match="^no metrics files given$"):
        perplexity_table([], [])
    with pytest.raises(ValueError, match="^2 metrics files but 1 test files; one of each per model$"):
        perplexity_table([whole, whole], [score_file(whole)])


def test_a_test_score_of_another_model_or_checkpoint_is_refused(tmp_path):
    """The row joins a model's training and its test score: a test.json of another model, or of an earlier
    checkpoint of the same model (a copy of results/models/ put together by hand), would give the row another
    model's test perplexity."""
    a = metrics(tmp_path / "a.json", "d0.0_r0", 0.0, 20000, 20000)
    b = metrics(tmp_path / "b.json", "d0.1_r0", 0.1, 20000, 20000)
    with pytest.raises(ValueError) as err:
        perplexity_table([a, b], [score_file(b), score_file(a)])
    assert str(err.value) == f"{score_file(b)}: scores model 'd0.1_r0', but {a} is model 'd0.0_r0'"
    old = json.loads(score_file(a).read_text())
    old["provenance"]["checkpoint_sha256"] = "f" * 64
    score_file(a).write_text(json.dumps(old))
    with pytest.raises(ValueError) as err:
        table_of([a, b])
    assert str(err.value) == (f"{score_file(a)}: scored another checkpoint than the one {a} records "
                              "(checkpoint_sha256 differs); score it again (rule test_perplexity)")
    del old["provenance"]["checkpoint_sha256"]
    score_file(a).write_text(json.dumps(old))
    with pytest.raises(ValueError) as err:
        table_of([a, b])
    assert str(err.value) == (f"{score_file(a)}: names no checkpoint it scored (provenance.checkpoint_sha256), so it "
                              f"cannot be matched with {a}; score it again (rule test_perplexity)")
    assert list(table_of([b])["test_ppl"]) == [420.1]


@pytest.mark.parametrize("which, edit, said", [
    ("metrics", lambda r: [1], "a JSON list, not an object of model, dropout, replicate, seed, valid_ppl, epochs, "
                               "best_epoch, training_seconds"),
    ("metrics", lambda r: {**r, "provenance": "x"}, 'provenance is "x"; it must be an object'),
    ("metrics", lambda r: {**r, "provenance": {"training": [1]}}, "provenance.training is [1]; it must be an object"),
    ("metrics", lambda r: {**r, "epochs": 5}, "epochs is 5; it must be a non-empty list of the epochs' records"),
    ("test", lambda r: {**r, "test_ppl": "abc"}, 'test_ppl is "abc"; it must be a finite perplexity >= 1'),
    ("metrics", lambda r: {**r, "valid_ppl": float("nan")}, "valid_ppl is NaN; it must be a finite perplexity >= 1"),
    ("test", lambda r: {**r, "test_ppl": float("inf")}, "test_ppl is Infinity; it must be a finite perplexity >= 1"),
    ("test", lambda r: {**r, "test_ppl": 0.5}, "test_ppl is 0.5; it must be a finite perplexity >= 1"),
    ("test", lambda r: [r], "a JSON list, not an object of model, test_ppl"),
    ("test", lambda r: {**r, "provenance": None}, "provenance is null; it must be an object"),
    # without it the test perplexity of another checkpoint would be put beside this one's validation
    ("metrics", lambda r: {k: v for k, v in r.items() if k != "provenance"},
     "provenance.checkpoint_sha256 is null; it must name the checkpoint trained"),
    ("metrics", lambda r: {**r, "provenance": {"training": {}, "checkpoint_sha256": 5}},
     "provenance.checkpoint_sha256 is 5; it must name the checkpoint trained"),
    ("metrics", lambda r: {**r, "dropout": None}, "dropout is null; it must be a number in [0, 1)"),
    ("metrics", lambda r: {**r, "replicate": True}, "replicate is true; it must be an integer >= 0"),
    ("metrics", lambda r: {**r, "model": list(range(100))}, "model is [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11...; it "
                                                            "must be a model name"),  # cut short: one line
])
def test_a_value_of_the_wrong_kind_is_one_error_naming_file_and_key(tmp_path, which, edit, said):
    """Read as it stands, a list would stop the table with an AttributeError, an integer for the epochs with a
    TypeError, text for a perplexity only in the figure, and NaN would be drawn as no point at all."""
    whole = metrics(tmp_path / "whole.json", "d0.0_r0", 0.0, 20000, 20000)
    bad = tmp_path / "bad.json"
    source = whole if which == "metrics" else score_file(whole)
    bad.write_text(json.dumps(edit(json.loads(source.read_text())), allow_nan=True))
    with pytest.raises(ValueError) as err:
        if which == "metrics":
            perplexity_table([whole, bad], [score_file(whole)] * 2)
        else:
            perplexity_table([whole, whole], [score_file(whole), bad])
    assert str(err.value) == f"{bad}: not a complete {which}.json ({said})"


def test_the_tiny_runs_own_metrics_and_test_files_make_its_table_and_say_what_was_scored(tiny_run):
    """The files train_lstm and test_perplexity really write (not hand-made ones): every row is its model's numbers,
    and the title's tokens are the tiny config's (a key the jobs stopped writing would make it vaguer)."""
    import pandas as pd
    import yaml

    work = tiny_run / "pristine"
    tiny = yaml.safe_load((work / "tests/config/tiny.yaml").read_text())["training"]
    models = sorted((work / "results/models").glob("*/metrics.json"))
    assert [m.parent.name for m in models] == ["d0.0_r0", "d0.5_r0"]
    table = perplexity_table(models, [m.with_name("test.json") for m in models])
    assert table.attrs["scored_on"] == (f"the first {tiny['valid_tokens']:,} validation and test tokens"
                                        .replace(",", " ")) and tiny["valid_tokens"] == tiny["test_tokens"]
    for row, m in zip(table.itertuples(), models):
        trained, tested = json.loads(m.read_text()), json.loads(m.with_name("test.json").read_text())
        assert (row.model, row.dropout, row.seed, row.epochs) == (m.parent.name, trained["dropout"], trained["seed"],
                                                                  tiny["epochs"])
        assert row.valid_ppl == min(e["valid_ppl"] for e in trained["epochs"]) and row.test_ppl == tested["test_ppl"]
        assert tested["tokens"] == tiny["test_tokens"] and 1 < row.test_ppl < 2000  # a 2 000-word vocabulary
    written = pd.read_csv(work / "results/tables/perplexity.csv")  # the pipeline's own table: the same numbers
    pd.testing.assert_frame_equal(written, table, check_dtype=False)
