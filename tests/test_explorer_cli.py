"""lstmscope-explorer: the neuron explorer page of any activations file (another model's, a text of one's own)."""
from __future__ import annotations

import json
import re
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest

from lstmscope.dump_cli import main as dump_main
from lstmscope.explorer_cli import main

from neurons_support import HIDDEN, divergence_csv, tiny  # noqa: F401 (fixtures)
from test_explorer import chromium, selftest  # noqa: F401  (fixture)
from conftest import digests, skip_or_fail


def page_data(path) -> dict:
    return json.loads(re.search(r'id="lstmscope-data">(.*?)</script>', path.read_text(), flags=re.S).group(1))


def offered(data) -> list[tuple[int, str, list[int]]]:
    return [(v["layer"], v["state"], [r["neuron"] for r in v["neurons"]]) for v in data["views"]]


def ranking(table: pd.DataFrame, k: int | None) -> list[tuple[int, str, list[int]]]:
    out = []
    for (layer, state), sub in table[table["rank"].notna()].groupby(["layer", "state"], sort=False):
        neurons = sub.sort_values("rank")["neuron"].tolist()
        out.append((int(layer), str(state), neurons[:k] if k else neurons))
    order = {"h": 0, "c": 1}
    return sorted(out, key=lambda v: (v[0], order[v[1]]))


@pytest.fixture()
def results(tiny, divergence_csv, tmp_path):  # noqa: F811
    """A results/ folder laid out as the pipeline's, holding the test model's file and its divergence table."""
    model = str(h5py.File(tiny.activations, "r").attrs["model"])
    (tmp_path / "results" / "activations" / model).mkdir(parents=True)
    (tmp_path / "results" / "neurons" / model / "test").mkdir(parents=True)
    shutil.copy(tiny.activations, tmp_path / "results" / "activations" / model / "test.h5")
    shutil.copy(divergence_csv, tmp_path / "results" / "neurons" / model / "test" / "divergence.csv")
    return tmp_path, model


def test_a_pipeline_file_gets_its_own_texts_ranking(results, divergence_csv, capsys):  # noqa: F811
    root, model = results
    out = root / "page.html"
    assert main([str(root / "results" / "activations" / model / "test.h5"), "-o", str(out), "--neurons", "3"]) == 0
    data = page_data(out)
    assert offered(data) == ranking(pd.read_csv(divergence_csv), 3)
    assert data["ranked_on"] is None and data["title"] == f"lstmscope neurons · {model} · test"
    printed = capsys.readouterr().out
    assert printed.startswith(f"{out}: ") and "neurons/" + model + "/test/divergence.csv" in printed
    assert data["scale"] == "median"  # the default, as heatmap.scale's
    assert main([str(root / "results" / "activations" / model / "test.h5"), "-o", str(out), "--scale", "range"]) == 0
    assert page_data(out)["scale"] == "range"  # the scale the page opens on, as heatmap.scale
    # the expectancy's colours: from the pipeline's heatmap.expectancy_floor by default, as its figures and pages
    assert data["expectancy"]["floor"] == pytest.approx(-6.0)
    with h5py.File(root / "results" / "activations" / model / "test.h5", "r") as f:
        smallest = float(np.nanmin(np.log10(f["expectancy"][:].astype(np.float64))))
    for floor, low in (("0.001", -3.0), ("auto", min(smallest, -1.0))):  # auto: the text's smallest p, at most 0.1
        assert main([str(root / "results" / "activations" / model / "test.h5"), "-o", str(out),
                     "--expectancy-floor", floor]) == 0
        assert page_data(out)["expectancy"]["floor"] == pytest.approx(low), floor


def test_a_page_a_pipeline_rule_wrote_is_not_replaced_one_of_the_commands_is(  # noqa: F811
        results, divergence_csv, tmp_path, capsys):
    """-o over a page of the run (results/explorer/...) replaced it, and the run and its report then showed the
    command's page as the job's. A page whose provenance names a pipeline rule (the explorers' data, or the record
    a cluster table's page ends with) is refused before anything is read; a page of the command's own is replaced."""
    from lstmscope.html_page import page_provenance, with_provenance
    from lstmscope.neuron_explorer import build_neuron_explorer

    root, model = results
    h5 = root / "results" / "activations" / model / "test.h5"
    explorer_page, table_page = tmp_path / "explorer.html", tmp_path / "top_words.html"
    build_neuron_explorer(h5, divergence_csv, explorer_page, 2, 40, "a pipeline page", rule="neuron_explorer")
    table_page.write_text(with_provenance("<html><body><p>a table</p></body></html>",
                                          page_provenance([h5], "cluster_measures")))
    before = digests((explorer_page, table_page))
    for page, rule in ((explorer_page, "neuron_explorer"), (table_page, "cluster_measures")):
        assert main([str(h5), "-o", str(page), "--neurons", "2"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and (f"--output {page}: a page the pipeline's rule {rule} wrote (its provenance "
                                          "says so); this command would replace it") in err, err
    assert digests((explorer_page, table_page)) == before
    own = tmp_path / "own.html"
    for _ in range(2):  # written, then written again over its own
        assert main([str(h5), "-o", str(own), "--neurons", "2"]) == 0
    assert "rule" not in page_data(own)["provenance"]


def test_a_text_of_ones_own_is_ranked_on_the_pipelines_text(results, tiny, divergence_csv, tmp_path,
                                                              monkeypatch, capsys):  # noqa: F811
    root, model = results
    text = tmp_path / "probe.txt"
    text.write_text("the ( of ) and , the .\n", encoding="utf-8")
    probe = tmp_path / "probe.h5"
    assert dump_main([str(tiny.checkpoint), str(text), "--vocabulary", str(tiny.vocabulary), "-o", str(probe)]) == 0
    monkeypatch.chdir(root)  # results/neurons/<model>/test/divergence.csv, from the folder the command runs in
    out = tmp_path / "probe.html"
    assert main([str(probe), "-o", str(out), "--neurons", "all"]) == 0
    data = page_data(out)
    with h5py.File(probe, "r") as f:
        assert data["words"] == [w.decode() for w in f["tokens/words"][:]]
    assert offered(data) == ranking(pd.read_csv(divergence_csv), None)  # every live neuron
    assert data["ranked_on"] == "test" and data["text"] == "probe"
    assert data["title"] == f"lstmscope neurons · {model} · probe (text file probe.txt)"
    # a text of one's own named like the pipeline's text is still said to be ranked on the pipeline's
    named = tmp_path / "test.txt"
    named.write_text("the ( of ) .\n", encoding="utf-8")
    assert dump_main([str(tiny.checkpoint), str(named), "--vocabulary", str(tiny.vocabulary), "-o",
                      str(tmp_path / "own.h5")]) == 0
    assert main([str(tmp_path / "own.h5"), "-o", str(out)]) == 0
    data = page_data(out)
    assert data["text"] == "test" and data["ranked_on"] == "test" and data["title"].endswith("(text file test.txt)")


@pytest.mark.browser
def test_browser_a_token_is_never_broken_over_two_lines(results, tiny, tmp_path, chromium, monkeypatch):  # noqa: F811
    """WikiText writes a hyphen as the token "@-@", which the browser broke after its "-" at a line's end ("@-" on
    one line, "@" on the next: two tokens to a reader). Each token short enough for a line is drawn on one; checked
    on a text of hyphenated words at several widths, so that many an "@-@" falls at a line's end."""
    root, _ = results
    text = tmp_path / "hyphens.txt"
    text.write_text(" ".join(["the 12 @-@ inch gun , a well @-@ known side @-@ by @-@ side run"] * 30) + "\n",
                    encoding="utf-8")
    probe = tmp_path / "hyphens.h5"
    assert dump_main([str(tiny.checkpoint), str(text), "--vocabulary", str(tiny.vocabulary), "-o", str(probe)]) == 0
    monkeypatch.chdir(root)
    out = tmp_path / "hyphens.html"
    assert main([str(probe), "-o", str(out), "--neurons", "2"]) == 0
    view = page_data(out)["views"][0]
    for width in (420, 683, 1280):
        result = selftest(chromium, out, f"{view['layer']}:{view['neurons'][0]['neuron']}:h:symmetric", tmp_path,
                          window=(width, 700))
        assert result["errors"] == [], result["errors"]
        assert result["words"].count("@-@") == 120
        assert result["brokenTokens"] == [], (width, [result["words"][i] for i in result["brokenTokens"]])


def test_a_text_of_ones_own_dumped_and_opened_elsewhere_is_ranked_in_its_checkpoints_results(
        results, tiny, divergence_csv, tmp_path, monkeypatch, capsys):  # noqa: F811
    """The file records the checkpoint it was dumped from (as a whole path, though given relative to the project):
    run in another folder, the command finds the ranking in that checkpoint's results folder; where no folder
    holds one, the error names each place looked at."""
    root, model = results
    (root / "results" / "models" / model).mkdir(parents=True)
    shutil.copy(tiny.checkpoint, root / "results" / "models" / model / "model.pt")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    text = elsewhere / "probe.txt"
    text.write_text("the ( of ) and , the .\n", encoding="utf-8")
    monkeypatch.chdir(root)
    assert dump_main([f"results/models/{model}/model.pt", str(text), "--vocabulary", str(tiny.vocabulary), "-o",
                      str(elsewhere / "probe.h5")]) == 0
    monkeypatch.chdir(elsewhere)
    assert main(["probe.h5", "-o", "probe.html", "--neurons", "all"]) == 0
    assert offered(page_data(elsewhere / "probe.html")) == ranking(pd.read_csv(divergence_csv), None)
    shutil.rmtree(root / "results" / "neurons")
    capsys.readouterr()
    assert main(["probe.h5", "-o", "again.html"]) == 1
    err = capsys.readouterr().err
    assert err == (f"lstmscope-explorer: error: neither {root}/results/neurons/{model}/test/divergence.csv nor "
                   f"results/neurons/{model}/test/divergence.csv: divergence table not found; give the ranking of "
                   f"model {model}'s neurons with --divergence (results/neurons/<model>/<text>/divergence.csv) or "
                   "--ranked-on TEXT (a text the pipeline ranked), or run the command in the project's folder\n"), err
    assert not (elsewhere / "again.html").exists()


def test_ranked_on_chooses_another_texts_ranking(results, divergence_csv, tmp_path):  # noqa: F811
    root, model = results
    table = pd.read_csv(divergence_csv)
    live = table["rank"].notna()
    other = table.assign(text="other")
    groups = other[live].groupby(["layer", "state"])["rank"]
    other.loc[live, "rank"] = groups.transform("max") + 1 - other.loc[live, "rank"]  # the ranking reversed
    # with each rank's divergences, so that the ranks follow kl_sum as a table's do (the command checks it)
    kl = ["kl_pq", "kl_qp", "kl_sum"]
    by_rank = table[live].set_index(["layer", "state", "rank"])[kl]
    other.loc[live, kl] = by_rank.loc[list(zip(other.loc[live, "layer"], other.loc[live, "state"],
                                               other.loc[live, "rank"]))].to_numpy()
    (root / "results" / "neurons" / model / "other").mkdir()
    other.to_csv(root / "results" / "neurons" / model / "other" / "divergence.csv", index=False)
    out = tmp_path / "p.html"
    assert main([str(root / "results" / "activations" / model / "test.h5"), "-o", str(out), "--neurons", "2",
                 "--ranked-on", "other"]) == 0
    data = page_data(out)
    assert offered(data) == ranking(other, 2) != ranking(table, 2) and data["ranked_on"] == "other"


@pytest.mark.browser
def test_the_page_of_ones_own_text_says_whose_ranking_it_shows(results, tiny, tmp_path, chromium,
                                                                 monkeypatch, capsys):  # noqa: F811
    root, model = results
    text = tmp_path / "probe.txt"
    text.write_text("the ( of ) and , the .\n", encoding="utf-8")
    probe = tmp_path / "probe.h5"
    assert dump_main([str(tiny.checkpoint), str(text), "--vocabulary", str(tiny.vocabulary), "-o", str(probe)]) == 0
    monkeypatch.chdir(root)
    out = tmp_path / "probe.html"
    assert main([str(probe), "-o", str(out)]) == 0
    top = page_data(out)["views"][0]["neurons"][0]["neuron"]
    result = selftest(chromium, out, f"1:{top}:h:symmetric", tmp_path, query={"search": "the"})
    assert result["errors"] == [] and result["spans"] == 9
    assert "(all on text test, whose ranking this page uses)" in result["info"]
    assert result["search"]["matched"] == [0, 6]
    # on the median scale the grey is this text's median, not the ranked text's, and the line says so
    centred = selftest(chromium, out, f"1:{top}:h:median", tmp_path)
    said = re.search(r"; grey: its median (\S+) over this text, probe$", centred["info"])
    with h5py.File(probe) as f:
        h = f["layer1/h"][:, top].astype(np.float64)
    assert said and abs(float(said.group(1)) - np.median(h)) <= np.ptp(h) / 254 + 5e-4, centred["info"]
    # --median-from: centred on each neuron's median over the pipeline's text instead, said so; no short-text note
    capsys.readouterr()
    assert main([str(probe), "-o", str(out), "--median-from", str(tiny.activations)]) == 0
    assert "note" not in capsys.readouterr().err
    data = page_data(out)
    with h5py.File(tiny.activations) as f:
        for key, series in data["series"].items():
            layer, j = map(int, key.split(":"))
            for state in ("h", "c"):
                assert series[state]["median"] == pytest.approx(np.median(f[f"layer{layer}/{state}"][:, j]), abs=1e-6)
        other = np.median(f["layer1/h"][:, top])
    assert data["median_text"] == "test" and other != pytest.approx(np.median(h), abs=1e-3)
    centred = selftest(chromium, out, f"1:{top}:h:median", tmp_path)
    said = re.search(r"; grey: its median (\S+) over text test$", centred["info"])
    assert centred["errors"] == [] and said and float(said.group(1)) == pytest.approx(other, abs=1e-3), centred["info"]
    assert main([str(probe), "-o", str(out)]) == 0  # without it, a text of fewer than 1 000 tokens: a note
    assert ("note: the median scale is centred on each neuron's median over the 9 tokens of this text only"
            in capsys.readouterr().err)


def test_bad_input_is_one_line_and_writes_nothing(results, divergence_csv, tmp_path, capsys):  # noqa: F811
    root, model = results
    activations = str(root / "results" / "activations" / model / "test.h5")
    out = tmp_path / "p.html"
    other = pd.read_csv(divergence_csv).assign(model="d0.9_r0")
    other.to_csv(tmp_path / "other.csv", index=False)
    # the table of a deeper model: a layer 3 beyond the file's (a wider one: test_neuron_explorer)
    table = pd.read_csv(divergence_csv)
    pd.concat([table, table[table["layer"] == 1].assign(layer=3)]).to_csv(tmp_path / "deeper.csv", index=False)
    foreign = tmp_path / "foreign.h5"  # another checkpoint's medians
    shutil.copy(activations, foreign)
    with h5py.File(foreign, "a") as f:
        f.attrs["checkpoint_sha256"] = "0" * 64
    cases = [(["--median-from", str(foreign)], f"--median-from {foreign}: dumped from another checkpoint than "
                                                f"{activations}"),
             (["--median-from", str(tmp_path / "nope.h5")], "nope.h5: activations file not found"),
             (["--divergence", str(tmp_path / "other.csv")],
              f"other.csv is the divergence table of model d0.9_r0, not of model {model}"),
             (["--divergence", str(tmp_path / "deeper.csv")], f"deeper.csv: line {len(table) + 2} has layer 3 "
                                                              f"neuron {table['neuron'][0]}, which {activations} lacks"),
             (["--divergence", str(tmp_path / "nope.csv")], f"--divergence {tmp_path / 'nope.csv'}: divergence table "
                                                             "not found"),
             (["--ablation", str(tmp_path / "nope.h5")], "nope.h5: ablation file not found"),
             (["-a", str(tmp_path / "nope.h5")], "nope.h5: ablation file not found"),  # as lstmscope-heatmap's -a
             (["--ranked-on", "nope"], "nope/divergence.csv: divergence table not found"),
             (["--ranked-on", "nope"], "--ranked-on TEXT (a text the pipeline ranked: test)"),
             (["--ranked-on", "test", "--divergence", str(divergence_csv)], "both choose the ranking"),
             (["--neurons", str(HIDDEN + 1)], f"--neurons {HIDDEN + 1}: more than the {HIDDEN} neurons of a layer")]
    for args, message in cases:
        assert main([activations, "-o", str(out), *args]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("lstmscope-explorer: error: ") and "\n" not in err and message in err, err
        assert "nope.csv" not in err or "give the ranking" not in err  # not told to give what it gave
        assert not out.exists()
    assert main([str(tmp_path / "missing.h5"), "-o", str(out)]) == 1
    assert "missing.h5: activations file not found" in capsys.readouterr().err and not out.exists()
    assert main([activations, "-o", str(tmp_path / "page.HTML")]) == 0  # the suffix in any case
    for args, message in ((["-o", str(tmp_path / "p.txt")], "p.txt: a web page, ending in .html (or .htm)"),
                          (["-o", str(out), "--neurons", "0"], "--neurons: 0: must be at least 1"),
                          (["-o", str(out), "--neurons", "some"], "'some': a number of neurons, or all"),
                          (["-o", str(out), "--expectancy-floor", "1"], "--expectancy-floor: '1': give a probability"),
                          # an unset shell variable: was the default text taken without a word
                          (["-o", str(out), "--ranked-on", ""], "--ranked-on: an empty text name")):
        with pytest.raises(SystemExit) as exit_:
            main([activations, *args])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
    assert not out.exists()
    assert main([activations, "-o", str(out), "--neurons", str(HIDDEN)]) == 0 and out.is_file()  # a layer's all


def test_the_console_script_runs(results, tmp_path):
    import importlib.metadata
    import os
    import subprocess
    import sys

    try:
        importlib.metadata.distribution("lstmscope")
    except importlib.metadata.PackageNotFoundError:
        skip_or_fail("lstmscope is not installed (pip install -e .)")
    root, model = results
    script = os.path.join(os.path.dirname(sys.executable), "lstmscope-explorer")
    out = tmp_path / "page.html"
    r = subprocess.run([script, str(root / "results" / "activations" / model / "test.h5"), "-o", str(out)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(f"{out}: ") and page_data(out)["model"] == model


def test_a_table_holding_values_no_divergence_table_has_is_refused(results, divergence_csv, tmp_path, capsys):  # noqa: F811
    """An edited table's impossible numbers (a negative KL, a fraction above 1, a mean outside min-max, ranks out of
    the order of its measure) are refused naming the line, before anything is written: the page would show them."""
    root, model = results
    activations = str(root / "results" / "activations" / model / "test.h5")
    out = tmp_path / "p.html"
    table = pd.read_csv(divergence_csv)
    live = table[table["rank"].notna() & (table["layer"] == 1) & (table["state"] == "h")].sort_values("rank")
    first, second = live.index[0], live.index[1]
    assert table.loc[first, "kl_sum"] > table.loc[second, "kl_sum"]  # distinct, so a swap breaks the order

    def edited(**cells) -> pd.DataFrame:
        t = table.copy()
        for col, value in cells.items():
            t.loc[first, col] = value
        return t

    swapped = table.copy()
    swapped.loc[[first, second], "rank"] = [2, 1]
    line = first + 2
    cases = {
        "kl_pq": (edited(kl_pq=-3.0, kl_sum=table.loc[first, "kl_qp"] - 3.0),
                  f"column kl_pq must hold KL divergences of 0 or more; line {line} has -3"),
        "kl_sum": (edited(kl_sum=table.loc[first, "kl_sum"] + 0.5), f"column kl_sum must hold kl_pq + kl_qp; line {line}"),
        "fraction": (edited(near_zero_fraction=7.5),
                     f"column near_zero_fraction must hold fractions from 0 to 1; line {line} has 7.5"),
        "std": (edited(std=-0.5), f"column std must hold values of 0 or more; line {line} has -0.5"),
        "mean": (edited(mean=table.loc[first, "max"] + 1.0),
                 f"column mean must hold values between the line's min and max; line {line}"),
        "order": (swapped, f"line {line}: layer 1 h rank 2 has kl_sum {table.loc[first, 'kl_sum']:g}, more than rank "
                           f"1's {table.loc[second, 'kl_sum']:g}; the ranks follow kl_sum"),
    }
    for name, (frame, message) in cases.items():
        path = tmp_path / f"{name}.csv"
        frame.to_csv(path, index=False)
        assert main([activations, "-o", str(out), "--divergence", str(path)]) == 1, name
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"lstmscope-explorer: error: {path}: ") and "\n" not in err and message in err, err
        assert not out.exists()
    tied = table.copy()  # equal values in rank order are a ranking still (ties keep the neurons' order)
    tied.loc[first, ["kl_pq", "kl_qp", "kl_sum"]] = table.loc[second, ["kl_pq", "kl_qp", "kl_sum"]].to_numpy()
    tied.to_csv(tmp_path / "tied.csv", index=False)
    assert main([activations, "-o", str(out), "--divergence", str(tmp_path / "tied.csv")]) == 0 and out.is_file()


def test_a_passage_longer_than_a_figure_takes_and_an_empty_title_are_usage_errors(results, tmp_path, capsys):
    root, model = results
    activations = str(root / "results" / "activations" / model / "test.h5")
    out = tmp_path / "p.html"
    for args, message in ((["--passage", "5001"], "--passage 5001: at most 5000 tokens"),
                          (["--title", ""], "--title: an empty title"), (["--title", "  "], "--title: an empty title")):
        with pytest.raises(SystemExit) as exit_:
            main([activations, "-o", str(out), *args])
        assert exit_.value.code == 2 and message in capsys.readouterr().err
        assert not out.exists()
    assert main([activations, "-o", str(out), "--passage", "5000", "--title", "mine"]) == 0
    assert page_data(out)["title"] == "mine"
