"""Export for serving: in-graph tokenization equals bertkit's Tokenizer; an exported SavedModel reloads in a fresh
process without bertkit and gives the Keras model's outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from bertkit import datasets
from bertkit.errors import ConfigError
from bertkit.export import InGraphTokenizer, export_saved_model
from bertkit.tokenization import Tokenizer

TEST_DATA = Path(__file__).resolve().parent / "data"

# Text that trips up tokenizers: accents, ligatures, full-width forms, control and zero-width characters, CJK next
# to Latin, emoji with modifiers, Greek final sigma, Hangul, very long words, stray combining marks, empty input.
TRICKY = [
    "Hello, World! It's a test.",
    "naïve café RÉSUMÉ — Straße façade Ångström",
    "ﬁne … “quotes” ½ ² full－width ＡＢＣ ｈｅｌｌｏ",
    "中文字符 and 日本語 mixed 한국어 텍스트",
    "soft\u00adhyphen zero\u200bwidth zw\u200djoiner\ufeffbom",
    "tab\there\nnewline\r\x00null\ufffdreplacement \x7f del",
    "ΟΔΟΣ Σίσυφος ΣΊΣΥΦΟΣ",
    "İstanbul ǅemal ﬀ Ǆ",
    "emoji 😀👍🏽 ok 🇫🇷!",
    "a" * 120 + " " + "é" * 101 + " ok",
    "don't can't won't $5.00 @user #tag 50% a/b c\\d",
    "Ⅻ ℃ ㎞ № ™",
    "x\u0301y e\u0301 \u0301 leading accent",
    "line\u2028separator\u2029paragraph\u3000ideographic space",
    "   ",
    "",
    "unaffable antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
]


def _jsonl(dataset, split, field, n):
    """``field`` of the first ``n`` records of a shipped dataset's split."""
    out = []
    with open(datasets.file(dataset, split), encoding="utf-8") as f:
        for line in f:
            out.append(json.loads(line)[field])
            if len(out) == n:
                break
    return out


def _real_corpus():
    sst2 = _jsonl("sst2", "dev", "text", 300)
    conll = [" ".join(tokens) for tokens in _jsonl("conll2003", "dev", "tokens", 150)]  # cased news text
    return sst2 + conll + TRICKY


def _check_encoding(in_graph, tokenizer, texts, texts_b=None, *, max_len):
    """Every row's ids, segment ids and character offsets equal ``Tokenizer.encode``'s; padding is 0."""
    if texts_b is None:
        got = in_graph.encode(tf.constant(texts, tf.string))
        expected = [tokenizer.encode(t, max_len=max_len) for t in texts]
    else:
        got = in_graph.encode(tf.constant(texts, tf.string), tf.constant(texts_b, tf.string))
        expected = [tokenizer.encode(a, b, max_len=max_len) for a, b in zip(texts, texts_b)]
    ids, segments, offsets = (got[k].numpy() for k in ("token_ids", "segment_ids", "offsets"))
    assert ids.dtype == np.int32 and segments.dtype == np.int32
    assert ids.shape == (len(texts), max(len(e.token_ids) for e in expected))
    for row, (enc, text) in enumerate(zip(expected, texts)):
        n = len(enc.token_ids)
        context = f"row {row}: {text!r}"
        assert ids[row, :n].tolist() == enc.token_ids, context
        assert segments[row, :n].tolist() == enc.segment_ids, context
        assert [tuple(o) for o in offsets[row, :n].tolist()] == enc.offsets, context
        assert not ids[row, n:].any() and not segments[row, n:].any() and not offsets[row, n:].any(), context
    return got


def test_in_graph_tokenizer_matches_tokenizer_uncased(default_bert_dir):
    vocab = default_bert_dir / "vocab.txt"
    texts = _real_corpus()
    _check_encoding(InGraphTokenizer(vocab, lowercase=True, max_len=64), Tokenizer(vocab, lowercase=True), texts,
                    max_len=64)
    # Truncation to a short max_len cuts inside words and still agrees.
    _check_encoding(InGraphTokenizer(vocab, lowercase=True, max_len=7), Tokenizer(vocab, lowercase=True), texts,
                    max_len=7)


def test_in_graph_tokenizer_matches_tokenizer_cased(default_bert_dir):
    vocab = default_bert_dir / "vocab.txt"
    _check_encoding(InGraphTokenizer(vocab, lowercase=False, max_len=64), Tokenizer(vocab, lowercase=False),
                    _real_corpus(), max_len=64)


def test_in_graph_pairs_truncate_longest_first(default_bert_dir):
    vocab = default_bert_dir / "vocab.txt"
    texts = _jsonl("mrpc", "dev", "text", 120) + TRICKY
    texts_b = _jsonl("mrpc", "dev", "text_b", 120) + TRICKY[::-1]
    tokenizer = Tokenizer(vocab, lowercase=True)
    for max_len in (24, 40, 128):  # both sides cut, one side cut, no cut
        _check_encoding(InGraphTokenizer(vocab, lowercase=True, max_len=max_len), tokenizer, texts, texts_b,
                        max_len=max_len)
    # Hand-checked tie rule: 5 + 5 tokens into a budget of 7 keeps 4 of a and 3 of b.
    got = InGraphTokenizer(vocab, lowercase=True, max_len=10).encode(tf.constant(["a b c d e"]),
                                                                     tf.constant(["v w x y z"]))
    assert got["segment_ids"].numpy().tolist() == [[0, 0, 0, 0, 0, 0, 1, 1, 1, 1]]


def test_in_graph_per_char_mode(tmp_path):
    sentences = (TEST_DATA / "chinese_sentences.txt").read_text(encoding="utf-8").splitlines()
    sentences += ["Hello 世界 ABC abc\t中\u3000文 É é 😀", "", "  ", "İ ǅ ﬁ"]
    # A vocab holding the most common characters only, so that out-of-vocab characters occur, plus a few
    # lowercase/accented letters and an uppercase one (which an uncased tokenizer must never produce).
    counts = {}
    for ch in "".join(sentences):
        counts[ch] = counts.get(ch, 0) + 1
    common = [ch for ch, _ in sorted(counts.items(), key=lambda kv: -kv[1])[:300] if not ch.isspace()]
    tokens = ["[PAD]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "b", "e", "é", "h", "A"] + common
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(dict.fromkeys(tokens)) + "\n", encoding="utf-8")
    for lowercase in (True, False):
        tokenizer = Tokenizer(vocab, lowercase=lowercase, per_char=True)
        got = _check_encoding(InGraphTokenizer(vocab, lowercase=lowercase, max_len=96, per_char=True), tokenizer,
                              sentences, max_len=96)
        ids = got["token_ids"].numpy()
        assert (ids == tokenizer.unk_id).any() and (ids == tokenizer.vocab["[unused1]"]).any()


def test_byte_offsets_are_utf8_spans(default_bert_dir):
    texts = ["café 中文 😀 naïve", "plain ascii"]
    got = InGraphTokenizer(default_bert_dir / "vocab.txt", max_len=32).encode(tf.constant(texts))
    for row, text in enumerate(texts):
        for (start, end), (b_start, b_end) in zip(got["offsets"].numpy()[row], got["byte_offsets"].numpy()[row]):
            assert text[start:end].encode("utf-8") == text.encode("utf-8")[b_start:b_end]


def test_empty_batch(tiny_bert_dir):
    got = InGraphTokenizer(tiny_bert_dir / "vocab.txt", max_len=16).encode(tf.constant([], tf.string))
    assert got["token_ids"].shape[0] == 0 and got["offsets"].shape[0] == 0


# ------------------------------------------------------------------------------------------------- SavedModel

_LOADER = r"""
import json, sys
import numpy as np
import tensorflow as tf
import tensorflow_text  # noqa: F401  registers the WordPiece op the graph uses

path, inputs_file, out_file = sys.argv[1:4]
inputs = json.load(open(inputs_file, encoding="utf-8"))
loaded = tf.saved_model.load(path)
single = loaded.signatures["serving_default"](texts=tf.constant(inputs["texts"]))
pairs = loaded.signatures["pairs"](texts=tf.constant(inputs["texts"]), texts_b=tf.constant(inputs["texts_b"]))
arrays = {f"single_{k}": v.numpy() for k, v in single.items()}
arrays.update({f"pairs_{k}": v.numpy() for k, v in pairs.items()})
np.savez(out_file, **arrays)
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in
                        ("bertkit", "keras_bert", "keras_transformer", "keras_multi_head", "recipes"))))
"""


def _tiny_classifier(bert_dir):
    from bertkit.encoder import load_encoder
    from bertkit.layers import Pooler

    encoder = load_encoder(bert_dir)
    token_ids = tf.keras.Input((None,), dtype=tf.int32, name="token_ids")
    segment_ids = tf.keras.Input((None,), dtype=tf.int32, name="segment_ids")
    hidden = encoder([token_ids, segment_ids])
    pooled = Pooler("mean")([hidden, token_ids])
    logits = tf.keras.layers.Dense(3, name="logits")(pooled)
    return tf.keras.Model([token_ids, segment_ids], [logits, hidden])


def test_saved_model_serves_raw_strings_in_fresh_process(tiny_bert_dir, tmp_path):
    model = _tiny_classifier(tiny_bert_dir)
    max_len = 24
    in_graph = InGraphTokenizer.from_bert_dir(tiny_bert_dir, max_len=max_len)
    tokenizer = Tokenizer.from_bert_dir(tiny_bert_dir)
    assert in_graph.lowercase == tokenizer.lowercase

    traces = []  # one entry per trace of either function (a Python side effect runs only while tracing)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="texts")])
    def serve(texts):
        traces.append("serve")
        enc = in_graph.encode(texts)
        logits, hidden = model([enc["token_ids"], enc["segment_ids"]], training=False)
        return {"logits": logits, "hidden": hidden, "token_ids": enc["token_ids"], "offsets": enc["offsets"]}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="texts"),
                                  tf.TensorSpec([None], tf.string, name="texts_b")])
    def serve_pairs(texts, texts_b):
        traces.append("serve_pairs")
        enc = in_graph.encode(texts, texts_b)
        logits, _ = model([enc["token_ids"], enc["segment_ids"]], training=False)
        return {"logits": logits, "token_ids": enc["token_ids"], "segment_ids": enc["segment_ids"]}

    export_dir = tmp_path / "run" / "export"
    export_dir.parent.mkdir()
    (export_dir).mkdir()
    (export_dir / "stale.txt").write_text("an older export is replaced whole")
    assert export_saved_model(export_dir, model, serve, signatures={"pairs": serve_pairs}) == export_dir
    assert (export_dir / "saved_model.pb").is_file() and not (export_dir / "stale.txt").exists()
    assert sorted(p.name for p in export_dir.parent.iterdir()) == ["export"]  # no temporary directory left
    # Each signature traced once: saving must not trace them again (in its save context it would, for tf.functions
    # held as attributes; the tokenizer makes a trace take seconds).
    assert sorted(traces) == ["serve", "serve_pairs"], traces

    texts = _jsonl("sst2", "dev", "text", 20) + TRICKY
    texts_b = list(reversed(texts))
    inputs_file = tmp_path / "inputs.json"
    inputs_file.write_text(json.dumps({"texts": texts, "texts_b": texts_b}), encoding="utf-8")
    out_file = tmp_path / "served.npz"
    proc = subprocess.run([sys.executable, "-c", _LOADER, str(export_dir), str(inputs_file), str(out_file)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [], "the loader imported bertkit/keras-bert"
    served = np.load(out_file)

    batch = tokenizer.encode_batch(texts, max_len=max_len)
    np.testing.assert_array_equal(served["single_token_ids"], batch["token_ids"])
    logits, hidden = model.predict([batch["token_ids"], batch["segment_ids"]], verbose=0)
    assert np.abs(served["single_logits"] - logits).max() < 1e-5
    assert np.abs(served["single_hidden"] - hidden).max() < 1e-5
    expected_offsets = [tokenizer.encode(t, max_len=max_len).offsets for t in texts]
    for row, offsets in enumerate(expected_offsets):
        assert [tuple(o) for o in served["single_offsets"][row, :len(offsets)].tolist()] == offsets

    pair_batch = tokenizer.encode_batch(texts, texts_b, max_len=max_len)
    np.testing.assert_array_equal(served["pairs_token_ids"], pair_batch["token_ids"])
    np.testing.assert_array_equal(served["pairs_segment_ids"], pair_batch["segment_ids"])
    pair_logits, _ = model.predict([pair_batch["token_ids"], pair_batch["segment_ids"]], verbose=0)
    assert np.abs(served["pairs_logits"] - pair_logits).max() < 1e-5


def test_export_needs_a_traceable_signature(tiny_bert_dir, tmp_path):
    model = _tiny_classifier(tiny_bert_dir)
    with pytest.raises(ConfigError, match="input_signature"):
        export_saved_model(tmp_path / "export", model, tf.function(lambda texts: texts))
    with pytest.raises(ConfigError, match="tf.function"):
        export_saved_model(tmp_path / "export", model, lambda texts: texts)
    assert not (tmp_path / "export").exists()
