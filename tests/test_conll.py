"""CoNLL reading and writing: awkward but valid files parse; broken ones give clear errors."""

from __future__ import annotations

import pytest
from conftest import FUZZ_EXAMPLES
from hypothesis import given, settings
from hypothesis import strategies as st

from finetune.conll import ConllError, parse_conll, read_conll, to_iob2, write_conll
from finetune.data import Sentence, generate_corpus


def _write(tmp_path, text, name="data.conll", mode="w"):
    p = tmp_path / name
    if mode == "wb":
        p.write_bytes(text)
    else:
        p.write_text(text, encoding="utf-8", newline="")
    return p


def test_conll2003_layout_with_docstart_and_iob1(tmp_path):
    text = (
        "-DOCSTART- -X- -X- O\n\n"
        "EU NNP I-NP I-ORG\nrejects VBZ I-VP O\nGerman JJ I-NP I-MISC\ncall NN I-NP O\n"
        "to TO I-VP O\nboycott VB I-VP O\nBritish JJ I-NP I-MISC\nlamb NN I-NP O\n. . O O\n\n"
        "Peter NNP I-NP I-PER\nBlackburn NNP I-NP I-PER\n\n"
        "-DOCSTART- -X- -X- O\n\n"
        "New NNP I-NP I-LOC\nYork NNP I-NP I-LOC\nB-LOC NNP I-NP B-LOC\n"
    )
    cf = read_conll(_write(tmp_path, text))
    assert cf.documents == 2 and cf.columns == 4
    assert [len(s) for s in cf.sentences] == [9, 2, 3]
    assert cf.sentences[0].tags[:3] == ("B-ORG", "O", "B-MISC")
    assert cf.sentences[1].tags == ("B-PER", "I-PER")
    # IOB1's B- marks a second adjacent entity of the same type
    assert cf.sentences[2].tags == ("B-LOC", "I-LOC", "B-LOC")
    assert cf.converted_iob1 == 5


def test_tabs_whitespace_only_separators_crlf_and_bom(tmp_path):
    text = "\ufeffJohn\tB-PER\r\nlives\tO\r\n \t \r\nin\tO\r\nParis\tB-LOC\r\n\t\r\n\r\n"
    cf = read_conll(_write(tmp_path, text))
    assert [s.words for s in cf.sentences] == [("John", "lives"), ("in", "Paris")]
    assert cf.sentences[1].tags == ("O", "B-LOC")


def test_no_trailing_blank_line_and_several_blank_lines(tmp_path):
    cf = read_conll(_write(tmp_path, "\n\n\na O\nb B-X\n\n\n\nc I-X"))
    assert [s.tags for s in cf.sentences] == [("O", "B-X"), ("B-X",)]


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("John B-PER\nlives\n", 2, "expected a word and a tag"),
        ("John NNP B-PER\nlives O\n", 2, "2 columns, but line 1 has 3"),
        ("John B-PER\nlives E-PER\n", 2, "invalid NER tag 'E-PER'"),
        ("John B-PER\nlives per\n", 2, "invalid NER tag"),
        ("John B-\n", 1, "invalid NER tag"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path, text, line, what):
    path = _write(tmp_path, text)
    with pytest.raises(ConllError) as err:
        read_conll(path)
    assert f"{path}:{line}:" in str(err.value)
    assert what in str(err.value)


@pytest.mark.parametrize("text", ["", "\n\n  \n", "-DOCSTART- -X- -X- O\n\n"])
def test_empty_files(tmp_path, text):
    with pytest.raises(ConllError, match="no sentences"):
        read_conll(_write(tmp_path, text))


def test_binary_junk(tmp_path):
    with pytest.raises(ConllError, match="binary"):
        read_conll(_write(tmp_path, b"\x7fELF\x02\x01\x01\x00\x00\x00junk", mode="wb"))


def test_not_utf8(tmp_path):
    with pytest.raises(ConllError, match=r":2: not UTF-8"):
        read_conll(_write(tmp_path, b"a O\n\xff\xfe B-PER\n", mode="wb"))


def test_huge_line(tmp_path):
    with pytest.raises(ConllError, match=r":2: line of 20001 characters is too long"):
        read_conll(_write(tmp_path, "a O\n" + "x" * 19999 + " O\n"))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ConllError, match="no such file"):
        read_conll(tmp_path / "nope.conll")
    with pytest.raises(ConllError, match="is a folder"):
        read_conll(tmp_path)


def test_to_iob2():
    assert to_iob2(["I-PER", "I-PER", "O", "I-LOC", "I-ORG", "B-ORG"]) == (
        ["B-PER", "I-PER", "O", "B-LOC", "B-ORG", "B-ORG"],
        3,
    )
    assert to_iob2(["B-PER", "I-PER"]) == (["B-PER", "I-PER"], 0)


def test_write_then_read_round_trip(tmp_path):
    train, _ = generate_corpus(50, 1, seed=9)
    path = tmp_path / "out.conll"
    write_conll(path, train)
    assert read_conll(path).sentences == train
    assert not list(tmp_path.glob(".*tmp"))  # the temp file was renamed away


def test_write_with_predictions_is_conlleval_input(tmp_path):
    s = [Sentence(("a", "b"), ("B-X", "O"))]
    path = tmp_path / "pred.conll"
    write_conll(path, s, [["B-X", "B-Y"]])
    assert path.read_text() == "a B-X B-X\nb O B-Y\n\n"


def test_write_refuses_words_with_whitespace(tmp_path):
    with pytest.raises(ConllError):
        write_conll(tmp_path / "x", [Sentence(("a b",), ("O",))])


_word = st.text(
    st.characters(
        blacklist_categories=("Cs", "Cc", "Zs", "Zl", "Zp"), blacklist_characters="\x85\ufeff"
    ),
    min_size=1,
    max_size=8,
).filter(lambda w: not any(c.isspace() for c in w) and w != "-DOCSTART-")
_tag = st.sampled_from(["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(_word, _tag), min_size=1, max_size=6), min_size=1, max_size=5))
def test_round_trip_property(tmp_path_factory, sents):
    sentences = [
        Sentence(tuple(w for w, _ in s), tuple(to_iob2([t for _, t in s])[0])) for s in sents
    ]
    path = tmp_path_factory.mktemp("rt") / "x.conll"
    write_conll(path, sentences)
    assert read_conll(path).sentences == sentences


def test_parse_lines_directly():
    cf = parse_conll(["a O", "", "b B-X"], "mem")
    assert len(cf.sentences) == 2


@settings(max_examples=FUZZ_EXAMPLES, deadline=None)
@given(st.lists(st.text(max_size=40), max_size=30))
def test_fuzz_conll_parser_only_raises_conll_error(lines):
    # Any text: it parses, or fails with a ConllError naming the line; never anything else.
    try:
        parse_conll(lines, "fuzz")
    except ConllError as exc:
        assert "fuzz" in str(exc)
