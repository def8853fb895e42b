"""Tokenisation and vocabulary on the real WikiText-2 files."""
from __future__ import annotations

import json
from collections import Counter

import pytest

from conftest import WIKITEXT2 as DATA
from lstmscope.vocabulary import EOS, UNK, Vocabulary, build_vocabulary, read_tokens, tokenize_lines, vocabulary_from_files

SPLIT_FILES = [DATA / f"{s}.txt" for s in ("train", "valid", "test")]


@pytest.fixture(scope="module")
def full_vocabulary(wikitext2) -> Vocabulary:
    return vocabulary_from_files(SPLIT_FILES)


def test_tokenisation_matches_pytorch_examples(wikitext2):
    assert list(tokenize_lines(["a b\n", "\n", " c  d \n"])) == ["a", "b", EOS, EOS, "c", "d", EOS]
    assert len(read_tokens(DATA / "train.txt")) == 2_088_628
    assert len(read_tokens(DATA / "valid.txt")) == 217_646
    assert len(read_tokens(DATA / "test.txt")) == 245_569


def test_full_vocabulary_has_33278_words_in_order_of_appearance(full_vocabulary):
    assert len(full_vocabulary) == 33_278
    first_line_words = (DATA / "train.txt").read_text(encoding="utf-8").splitlines()[1].split()
    assert full_vocabulary.words[0] == EOS  # the first line of train.txt is empty
    assert full_vocabulary.words[1: 1 + len(set(first_line_words))][:3] == first_line_words[:3]
    # every word in the order it first appears in train, valid and test, as pytorch/examples' Dictionary adds them
    # (each line's words split on white space, then <eos>)
    order = {}
    for split in SPLIT_FILES:
        with open(split, encoding="utf-8") as fh:
            for line in fh:
                order.update(dict.fromkeys(line.split() + [EOS]))
    assert full_vocabulary.words == list(order)


def test_max_size_keeps_most_frequent_and_maps_rest_to_unk():
    tokens = ["x", "y", "y", "z", "z", "z", EOS, UNK, "w"]
    vocab = build_vocabulary([tokens], max_size=4)
    assert set(vocab.words) == {"z", "y", EOS, UNK}
    assert vocab.decode(vocab.encode(["x", "z", "w"])) == [UNK, "z", UNK]


def test_max_size_ties_go_to_the_first_seen_and_ids_follow_first_appearance():
    # c, b and a occur twice each and there is room for two of them: c and b, seen first (not a and b, first
    # in the alphabet); ids in order of first appearance (<eos> 0, c 1, b 2), <unk> last (it appears last)
    vocab = build_vocabulary([f"{EOS} c b a b c a d {UNK}".split()], max_size=4)
    assert vocab.words == [EOS, "c", "b", UNK]
    assert vocab.decode(vocab.encode(["a", "b", "d"])) == [UNK, "b", UNK]


def test_max_size_adds_eos_and_unk_after_the_words_when_the_tokens_lack_them():
    # tokens that are not lines of a file (no <eos>, no <unk>): both are kept all the same, after the words
    vocab = build_vocabulary([["b", "a", "b", "c", "d"]], max_size=3)
    assert vocab.words == ["b", EOS, UNK]
    assert vocab.decode(vocab.encode(["a", "b"])) == [UNK, "b"]
    # a max_size with room for every word keeps them all and still adds both (it returned the words alone, and
    # encoding any other word failed: "the vocabulary has no <unk>")
    vocab = build_vocabulary([["b", "a", "b", "c", EOS]], max_size=10)
    assert vocab.words == ["b", "a", "c", EOS, UNK]
    assert vocab.decode(vocab.encode(["zebra", "c"])) == [UNK, "c"]


def test_max_size_on_wikitext(full_vocabulary):
    vocab = vocabulary_from_files(SPLIT_FILES, max_size=1000)  # ranked on the whole training split
    assert len(vocab) == 1000
    counts = Counter(read_tokens(DATA / "train.txt"))
    # the most frequent training words are in, the rarest are not
    assert {"the", ",", ".", "of", EOS, UNK} <= set(vocab.words)
    rare = min(counts, key=counts.__getitem__)
    assert rare not in vocab.index and rare in full_vocabulary.index
    assert vocab.decode(vocab.encode([rare])) == [UNK]


def test_max_size_counts_only_the_training_tokens_the_models_read(wikitext2):
    """With max_size the words are the most frequent of the first train_tokens training tokens (ties: first seen),
    worked out here with a Counter: no word is chosen by its count in the validation or test split, and every word
    kept occurs in the tokens the models train on."""
    n, size = 50_000, 3_000
    vocab = vocabulary_from_files(SPLIT_FILES, max_size=size, train_tokens=n)
    train = read_tokens(DATA / "train.txt")[:n]
    counts = Counter(train)
    first = {w: i for i, w in reversed(list(enumerate(train)))}
    ranked = sorted(counts, key=lambda w: (-counts[w], first[w]))
    want = {EOS, UNK, *[w for w in ranked if w not in (EOS, UNK)][:size - 2]}  # both always kept
    assert set(vocab.words) == want and len(vocab) == size
    assert vocab.words == sorted(vocab.words, key=lambda w: first[w])  # ids in order of first appearance
    assert all(w in counts for w in vocab.words)  # every word kept is one the models read
    # the counts of the validation and test splits choose nothing: other splits in the list change no word
    assert vocabulary_from_files(SPLIT_FILES[:1], max_size=size, train_tokens=n).words == vocab.words
    with pytest.raises(ValueError, match=r"train.txt: asked for 3000000 tokens but the split has only 2088628$"):
        vocabulary_from_files(SPLIT_FILES, max_size=size, train_tokens=3_000_000)


def test_save_load_roundtrip_and_digest(tmp_path, full_vocabulary):
    path = tmp_path / "vocabulary.json"
    full_vocabulary.save(path, max_size=None)
    loaded = Vocabulary.load(path)
    assert loaded.words == full_vocabulary.words and loaded.sha256 == full_vocabulary.sha256
    record = json.loads(path.read_text())
    record["words"][5] = "tampered"
    path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match="vocabulary.json: vocabulary digest does not match"):
        Vocabulary.load(path)


def test_unknown_word_without_unk_is_an_error():
    vocab = Vocabulary(["a", EOS])
    with pytest.raises(KeyError, match="'b' is not in the vocabulary"):
        vocab.encode(["a", "b"])


@pytest.mark.parametrize("text, why", [
    ('["a", "b"]', 'no list of words under "words"'), ('{"sha256": "x"}', 'no list of words under "words"'),
    ('{"words": ["a", 3]}', 'no list of words under "words"'), ("{not json", "Expecting property name"),
    ('{"words": ["a", "b", "a"], "sha256": "x"}', "vocabulary has duplicate words"),
])
def test_a_file_that_is_no_vocabulary_is_one_error_naming_it(tmp_path, text, why):
    path = tmp_path / "v.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"^{path}: not a lstmscope vocabulary file \(.*{why}"):
        Vocabulary.load(path)


def test_a_vocabulary_smaller_than_eos_and_unk_is_refused():
    with pytest.raises(ValueError, match=r"^vocabulary.max_size=1: must be at least 2 \(<eos> and <unk>\)$"):
        build_vocabulary([["a", "b", "c"]], max_size=1)
