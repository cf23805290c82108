"""Shipping a trained model: tokenization inside the TensorFlow graph and an atomically written SavedModel.

:class:`InGraphTokenizer` turns raw ``tf.string`` texts (and text pairs) into ``token_ids`` / ``segment_ids`` and
per-token character offsets with TensorFlow ops only, so a SavedModel can serve raw strings.

Why not ``tensorflow_text.BertTokenizer`` as is: its normalizer applies NFKC case folding, so it splits ligatures,
folds full-width letters, turns ``ß`` into ``ss``, ``…`` into ``...`` and keeps U+FFFD -- it then disagrees with
BERT's reference tokenizer and with :class:`bertkit.tokenization.Tokenizer` on real text. Here BERT's basic
tokenization (drop control characters, split on whitespace, CJK characters and punctuation as words of their own,
accent stripping + lowercasing for uncased vocabs) is taken per Unicode code point from
:mod:`bertkit.tokenization`'s own rules into two small sorted tables (character classes by code-point run, and the
code points whose normalized form differs) and applied in the graph with ``searchsorted``/``gather``; the two
tokenizers therefore agree on ids and offsets by construction (and the tests check it on real and tricky text).
Only the WordPiece step uses tensorflow-text (``FastWordpieceTokenizer`` on the already split words), so a loader
needs ``import tensorflow_text`` (it registers that op) but neither bertkit nor keras-bert.

Offsets: ``offsets`` are code-point (Python string) indices; ``byte_offsets`` the same spans in UTF-8 bytes (what
TensorFlow string ops use).
"""

from __future__ import annotations

import functools
import sys
import unicodedata
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import tensorflow as tf

with warnings.catch_warnings():  # tensorflow-text imports tensorflow-hub, which warns about setuptools' pkg_resources
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    import tensorflow_text as tf_text

from bertkit.errors import CheckpointError, ConfigError

# Character classes of the basic tokenizer.
DROP, SPACE, WORD, ISOLATED = 0, 1, 2, 3
MAX_CHARS_PER_WORD = 100  # BERT: a longer word becomes a single [UNK]
_UNICODE_LIMIT = sys.maxunicode + 1


# ------------------------------------------------------------------------------------------ per-character tables


@functools.lru_cache(maxsize=2)
def char_tables(lowercase: bool):
    """Numpy tables for the in-graph basic tokenizer, derived from :mod:`bertkit.tokenization`'s own per-character
    rules so the two cannot drift apart (computed once per case mode, about 1 s).

    Returns ``(run_starts, run_classes, changed_cps, changed_strings)``: the class (``DROP``, ``SPACE``, ``WORD``,
    ``ISOLATED``) of code point ``cp`` is ``run_classes[searchsorted(run_starts, cp, 'right') - 1]``; the code
    points listed in ``changed_cps`` (sorted) normalize to the matching UTF-8 string, every other one to itself.
    """
    from bertkit.tokenization import _ALONE, _BREAK, _WORD, _is_plain_unassigned, _plan_char

    classes = np.empty(_UNICODE_LIMIT, dtype=np.int8)
    changed_cps, changed_strings = [], []
    for cp in range(_UNICODE_LIMIT):
        if 0xD800 <= cp <= 0xDFFF:  # surrogates never come out of UTF-8 decoding
            classes[cp] = DROP
            continue
        ch = chr(cp)
        if _is_plain_unassigned(ch):  # the plan _plan_char gives it: the character itself, a word character
            classes[cp] = WORD
            continue
        plan = _plan_char(ch, lowercase)
        if isinstance(plan, str):
            norm, cls = plan, (WORD if plan else DROP)
        elif plan == _BREAK:
            norm, cls = "", SPACE
        else:
            ops = [op for op in plan if op[0] != _BREAK]
            if not ops:  # whitespace (or a line/paragraph separator that normalizes to whitespace)
                norm, cls = "", SPACE
            elif len(ops) == 1 and (ops[0][0] == _ALONE or len(plan) > 1):
                norm, cls = ops[0][1], ISOLATED  # punctuation, or a CJK ideograph between word breaks
            else:
                raise AssertionError(f"U+{cp:04X}: unsupported tokenizer plan {plan!r}")
            assert all(kind in (_WORD, _ALONE) for kind, _ in ops)
        classes[cp] = cls
        if cls in (WORD, ISOLATED) and norm != ch:
            changed_cps.append(cp)
            changed_strings.append(norm.encode("utf-8"))
    boundaries = np.flatnonzero(np.diff(classes)) + 1
    run_starts = np.concatenate([[0], boundaries]).astype(np.int32)
    run_classes = classes[run_starts].astype(np.int32)
    return (run_starts, run_classes, np.asarray(changed_cps, dtype=np.int32),
            np.asarray(changed_strings, dtype=object))


def per_char_table(vocab: list[str], lowercase: bool):
    """``(changed_cps, changed_tokens)`` for per-character mode: the vocab token of every code point whose token is
    not simply itself (whitespace -> ``[unused1]``, case/accent variants, ``[UNK]``), from
    :class:`bertkit.tokenization.Tokenizer` itself. Any other character is looked up as is (absent -> ``[UNK]``)."""
    from bertkit.tokenization import Tokenizer

    reference = Tokenizer({tok: i for i, tok in enumerate(vocab)}, lowercase=lowercase, per_char=True)
    in_vocab = set(vocab)
    changed_cps, changed_tokens = [], []
    for cp in range(_UNICODE_LIMIT):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        ch = chr(cp)
        if not (ch.isspace() or ch.lower() != ch or ch in in_vocab
                or unicodedata.normalize("NFD", ch) != ch):
            continue  # not in the vocab and no variant of it can be: [UNK] either way
        token = reference.tokenize(ch)[0]
        if token != ch:
            changed_cps.append(cp)
            changed_tokens.append(token.encode("utf-8"))
    return np.asarray(changed_cps, dtype=np.int32), np.asarray(changed_tokens, dtype=object)


def read_vocab(vocab_path) -> list[str]:
    """Tokens of a BERT ``vocab.txt`` in id order, read by :func:`bertkit.tokenization.load_vocab` (same stripping,
    same errors). A line that repeats an earlier token leaves that earlier id unreachable, as in the Tokenizer."""
    from bertkit.tokenization import load_vocab

    index = load_vocab(vocab_path)
    tokens = [f"[bertkit-unreachable-{i}]" for i in range(max(index.values()) + 1)]
    for token, i in index.items():
        tokens[i] = token
    for required in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"):
        if required not in index:
            raise CheckpointError(vocab_path, f"vocabulary has no {required} token")
    return tokens


# ------------------------------------------------------------------------------------------------ the tokenizer


class InGraphTokenizer(tf.Module):
    """BERT tokenization in TensorFlow ops (usable inside a ``tf.function`` / SavedModel).

    ``InGraphTokenizer(vocab_path, lowercase=True, max_len=128)``; ``per_char=True`` is the Chinese mode of
    :class:`bertkit.tokenization.Tokenizer`: one token per input character, whitespace -> ``[unused1]``,
    characters not in the vocab (after lowercasing if uncased) -> ``[UNK]``.

    ``encode(texts, texts_b=None)`` takes 1-D ``tf.string`` tensors of UTF-8 texts and returns a dict of int32
    tensors padded with 0 to the longest row of the batch:
    ``token_ids``, ``segment_ids`` (batch, seq) -- ``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]``, longest-first
    truncation to ``max_len`` -- and ``offsets`` (batch, seq, 2): ``(start, end)`` in CHARACTERS (Unicode code
    points, end exclusive) into the token's own input string (text a or text b, see ``segment_ids``);
    ``(0, 0)`` for ``[CLS]``, ``[SEP]`` and padding. ``byte_offsets`` gives the same spans in UTF-8 bytes.
    """

    @classmethod
    def from_tokenizer(cls, tokenizer, *, max_len: int = 512, name: str | None = None) -> "InGraphTokenizer":
        """The in-graph twin of a :class:`bertkit.tokenization.Tokenizer` read from a vocab file (same ids)."""
        if getattr(tokenizer, "vocab_path", None) is None:
            raise ConfigError("export needs a tokenizer read from a vocab.txt file (Tokenizer.from_bert_dir)")
        return cls(tokenizer.vocab_path, lowercase=tokenizer.lowercase, max_len=max_len,
                   per_char=tokenizer.per_char, name=name)

    def __init__(self, vocab_path, *, lowercase: bool = True, max_len: int = 512, per_char: bool = False,
                 name: str | None = None):
        super().__init__(name=name or "in_graph_tokenizer")
        if max_len < 3:
            raise ConfigError(f"max_len must be at least 3 ([CLS] x [SEP]), got {max_len}")
        self.vocab_path = str(vocab_path)
        self.lowercase = bool(lowercase)
        self.per_char = bool(per_char)
        self.max_len = int(max_len)
        vocab = read_vocab(vocab_path)
        index = {tok: i for i, tok in enumerate(vocab)}
        self.vocab_size = len(vocab)
        self.cls_id, self.sep_id = index["[CLS]"], index["[SEP]"]
        self.pad_id, self.unk_id = index["[PAD]"], index["[UNK]"]
        if per_char and "[unused1]" not in index:
            raise CheckpointError(vocab_path, "per-char mode needs an [unused1] token for whitespace")
        if per_char:
            changed_cps, changed_strings = per_char_table(vocab, self.lowercase)
            run_starts, run_classes = np.zeros([1], np.int32), np.full([1], WORD, np.int32)
        else:
            run_starts, run_classes, changed_cps, changed_strings = char_tables(self.lowercase)
        # Plain constants (no resources): nothing to track when a serving function captures them.
        self._run_starts = tf.constant(run_starts)
        self._run_classes = tf.constant(run_classes)
        # A leading sentinel (code point -1, never decoded) keeps the table non-empty for the lookups below.
        self._changed_cps = tf.constant(np.concatenate([[-1], changed_cps]).astype(np.int32))
        self._changed_strings = tf.constant(np.concatenate([np.array([b""], object), changed_strings]),
                                            dtype=tf.string)
        # no_pretokenization: words are already split; the byte limit is above BERT's 100-character limit,
        # which is applied separately (in characters, as BERT does).
        self._wordpiece = tf_text.FastWordpieceTokenizer(
            vocab=vocab, suffix_indicator="##", max_bytes_per_word=4 * MAX_CHARS_PER_WORD + 4,
            token_out_type=tf.int32, unknown_token="[UNK]", no_pretokenization=True)
        # encode() inside a tf.function: traced once per arity, without autograph (no Python control flow depends on
        # a tensor here); every serving signature that tokenizes calls the same traced function instead of tracing
        # tokenization again. In a plain holder, not a tracked attribute: saving would list a tracked tf.function
        # and trace it once more.
        texts_spec = tf.TensorSpec([None], tf.string)
        self._traced = SimpleNamespace(
            single=tf.function(self._encode, input_signature=[texts_spec], autograph=False),
            pair=tf.function(self._encode, input_signature=[texts_spec, texts_spec], autograph=False))

    @classmethod
    def from_bert_dir(cls, bert_dir, *, max_len: int = 512, per_char: bool = False, lowercase: bool | None = None):
        """The in-graph twin of ``Tokenizer.from_bert_dir``: ``bert_dir/vocab.txt``, case inferred the same way."""
        from bertkit.encoder import resolve_bert_dir
        from bertkit.tokenization import infer_lowercase, load_vocab

        if (Path(bert_dir) / "config.json").is_file() and not (Path(bert_dir) / "bert_config.json").is_file():
            bert_dir = resolve_bert_dir(bert_dir)  # a Hugging Face folder -> its converted Google checkpoint
        vocab_path = Path(bert_dir) / "vocab.txt"
        if lowercase is None:
            lowercase = infer_lowercase(bert_dir, load_vocab(vocab_path))
        return cls(vocab_path, lowercase=lowercase, max_len=max_len, per_char=per_char)

    # ---------------------------------------------------------------------------------------- pieces
    def tokenize(self, texts):
        """Word pieces of each text (no special tokens, no truncation) as ragged int32 tensors
        ``token_ids``, ``starts``, ``ends`` (character offsets) and ``byte_starts``, ``byte_ends``."""
        texts = tf.convert_to_tensor(texts, dtype=tf.string)
        texts = tf.reshape(texts, [-1])
        n_texts = tf.shape(texts, out_type=tf.int64)[0]
        codes, byte_starts = tf.strings.unicode_decode_with_offsets(
            texts, "UTF-8", errors="replace", replacement_char=0xFFFD)
        cps = codes.flat_values
        char_row = codes.value_rowids()
        char_pos = tf.range(tf.size(cps, out_type=tf.int64)) - tf.gather(codes.row_splits, char_row)
        char_byte_start = byte_starts.flat_values
        text_bytes = tf.strings.length(texts, unit="BYTE")
        # The end byte of each character is the start of the next one in its row, or the text length.
        next_start = tf.concat([char_byte_start[1:], tf.zeros([1], tf.int64)], axis=0)[:tf.size(cps)]
        is_last = tf.equal(char_pos + 1, tf.gather(codes.row_lengths(), char_row))
        char_byte_end = tf.where(is_last, tf.cast(tf.gather(text_bytes, char_row), tf.int64), next_start)

        classes = tf.gather(self._run_classes,
                            tf.searchsorted(self._run_starts, cps, side="right", out_type=tf.int32) - 1)
        chars = tf.strings.unicode_encode(tf.expand_dims(cps, 1), "UTF-8")
        slot = tf.searchsorted(self._changed_cps, cps, side="right", out_type=tf.int32) - 1  # >= 0 (sentinel)
        hit = tf.equal(tf.gather(self._changed_cps, slot), cps)
        normalized = tf.where(hit, tf.gather(self._changed_strings, slot), chars)

        if self.per_char:
            word_chars = tf.range(tf.size(cps, out_type=tf.int64))
            ids = self._wordpiece.tokenize(normalized)
            # Exactly one id per character: a character whose lowercase form is several pieces is unknown.
            ids = self._one_id_per_word(ids)
            return self._by_text(ids, tf.gather(char_pos, word_chars), tf.gather(char_pos, word_chars) + 1,
                                 tf.gather(char_byte_start, word_chars), tf.gather(char_byte_end, word_chars),
                                 tf.gather(char_row, word_chars), n_texts)

        # Words: maximal runs of WORD characters (ignoring DROP ones); ISOLATED characters stand alone.
        kept_idx = tf.reshape(tf.where(classes >= SPACE), [-1])
        k_cls = tf.gather(classes, kept_idx)
        k_row = tf.gather(char_row, kept_idx)
        prev_cls = tf.concat([[SPACE], k_cls[:-1]], axis=0)
        prev_row = tf.concat([[-1], k_row[:-1]], axis=0)
        prev_cls = tf.where(tf.equal(prev_row, k_row), prev_cls, SPACE)
        starts_word = tf.logical_or(tf.equal(k_cls, ISOLATED),
                                    tf.logical_and(tf.equal(k_cls, WORD), tf.not_equal(prev_cls, WORD)))
        in_word = k_cls >= WORD
        w_idx = tf.boolean_mask(kept_idx, in_word)            # flat char index of each word character
        w_starts = tf.boolean_mask(starts_word, in_word)
        word_of_char = tf.cumsum(tf.cast(w_starts, tf.int64)) - 1
        n_words = tf.reduce_sum(tf.cast(w_starts, tf.int64))
        w_norm = tf.gather(normalized, w_idx)
        words = tf.strings.reduce_join(
            tf.RaggedTensor.from_value_rowids(w_norm, word_of_char, nrows=n_words), axis=1)
        first_char = tf.reshape(tf.where(w_starts), [-1])     # index into w_* of each word's first char
        word_row = tf.gather(tf.gather(char_row, w_idx), first_char)

        # BERT: a word longer than 100 characters is one [UNK]; "[UNK]" itself is a whole vocab entry.
        too_long = tf.strings.length(words, unit="UTF8_CHAR") > MAX_CHARS_PER_WORD
        pieces, p_start, p_end = self._wordpiece.tokenize_with_offsets(tf.where(too_long, "[UNK]", words))
        piece_word = pieces.value_rowids()
        word_bytes = tf.strings.length(words, unit="BYTE")
        piece_long = tf.gather(too_long, piece_word)
        p_start = tf.where(piece_long, tf.zeros_like(p_start.flat_values), p_start.flat_values)
        p_end = tf.where(piece_long, tf.cast(tf.gather(word_bytes, piece_word), p_end.dtype), p_end.flat_values)

        # Map piece byte offsets in the normalized word back to original characters: every word character
        # contributes >= 1 normalized byte, so the global byte starts are strictly increasing.
        c_bytes = tf.cast(tf.strings.length(w_norm, unit="BYTE"), tf.int64)
        c_gstart = tf.cumsum(c_bytes, exclusive=True)
        word_gstart = tf.gather(c_gstart, first_char)
        g_start = tf.gather(word_gstart, piece_word) + tf.cast(p_start, tf.int64)
        g_last = tf.gather(word_gstart, piece_word) + tf.cast(p_end, tf.int64) - 1
        c_first = tf.searchsorted(c_gstart, g_start, side="right", out_type=tf.int64) - 1
        c_last = tf.searchsorted(c_gstart, g_last, side="right", out_type=tf.int64) - 1
        first_flat = tf.gather(w_idx, c_first)
        last_flat = tf.gather(w_idx, c_last)
        return self._by_text(
            pieces.flat_values, tf.gather(char_pos, first_flat), tf.gather(char_pos, last_flat) + 1,
            tf.gather(char_byte_start, first_flat), tf.gather(char_byte_end, last_flat),
            tf.gather(word_row, piece_word), n_texts)

    def _one_id_per_word(self, ids):
        single = tf.equal(ids.row_lengths(), 1)
        first = tf.gather(ids.flat_values, tf.minimum(ids.row_starts(),
                                                      tf.maximum(tf.size(ids.flat_values, tf.int64) - 1, 0)))
        return tf.where(single, first, self.unk_id)

    @staticmethod
    def _by_text(ids, starts, ends, byte_starts, byte_ends, rows, n_texts):
        def ragged(values):
            return tf.RaggedTensor.from_value_rowids(tf.cast(values, tf.int32), rows, nrows=n_texts)

        return {"token_ids": ragged(ids), "starts": ragged(starts), "ends": ragged(ends),
                "byte_starts": ragged(byte_starts), "byte_ends": ragged(byte_ends)}

    # ---------------------------------------------------------------------------------------- encode
    def encode(self, texts, texts_b=None):
        """``[CLS] a [SEP] (b [SEP])`` ids, segment ids and offsets, padded to the batch's longest row."""
        texts = tf.reshape(tf.convert_to_tensor(texts, dtype=tf.string), [-1])
        if texts_b is not None:
            texts_b = tf.reshape(tf.convert_to_tensor(texts_b, dtype=tf.string), [-1])
        if not tf.inside_function():  # eager: run the ops (tracing would cost more than one call)
            return self._encode(texts, texts_b)
        return self._traced.single(texts) if texts_b is None else self._traced.pair(texts, texts_b)

    def _encode(self, texts, texts_b=None):
        a = self.tokenize(texts)
        len_a = a["token_ids"].row_lengths()
        if texts_b is None:
            keep_a = tf.minimum(len_a, self.max_len - 2)
            parts = [self._truncate(a, keep_a)]
        else:
            b = self.tokenize(texts_b)
            keep_a, keep_b = _longest_first(len_a, b["token_ids"].row_lengths(), self.max_len - 3)
            parts = [self._truncate(a, keep_a), self._truncate(b, keep_b)]
        n = a["token_ids"].nrows()
        special = {"token_ids": (self.cls_id, self.sep_id)}

        def column(value):
            return tf.RaggedTensor.from_tensor(tf.fill(tf.stack([n, 1]), tf.constant(value, tf.int32)))

        out = {}
        for key in ("token_ids", "starts", "ends", "byte_starts", "byte_ends"):
            cls_v, sep_v = special.get(key, (0, 0))
            pieces = [column(cls_v)]
            for part in parts:
                pieces += [part[key], column(sep_v)]
            out[key] = tf.concat(pieces, axis=1)
        segments = [column(0), tf.zeros_like(parts[0]["token_ids"]), column(0)]
        if len(parts) == 2:
            segments += [tf.ones_like(parts[1]["token_ids"]), column(1)]
        segment_ids = tf.concat(segments, axis=1)
        return {
            "token_ids": out["token_ids"].to_tensor(self.pad_id),
            "segment_ids": segment_ids.to_tensor(0),
            "offsets": tf.stack([out["starts"].to_tensor(0), out["ends"].to_tensor(0)], axis=-1),
            "byte_offsets": tf.stack([out["byte_starts"].to_tensor(0), out["byte_ends"].to_tensor(0)], axis=-1),
        }

    @staticmethod
    def _truncate(part, keep):
        ids = part["token_ids"]
        rows = ids.value_rowids()
        pos = tf.range(tf.size(ids.flat_values, out_type=tf.int64)) - tf.gather(ids.row_splits, rows)
        mask = pos < tf.gather(keep, rows)
        kept_rows = tf.boolean_mask(rows, mask)
        return {key: tf.RaggedTensor.from_value_rowids(tf.boolean_mask(value.flat_values, mask), kept_rows,
                                                       nrows=ids.nrows())
                for key, value in part.items()}

def _longest_first(len_a, len_b, budget):
    """Lengths kept by BERT's pair truncation: drop from the longer text, from ``b`` on ties (closed form)."""
    import tensorflow as tf

    excess = tf.maximum(len_a + len_b - budget, 0)
    head = tf.minimum(excess, tf.abs(len_a - len_b))  # first shorten the longer text to the shorter's length
    rest = excess - head                               # then alternate, ``b`` first
    a = len_a - tf.where(len_a > len_b, head, 0) - rest // 2
    b = len_b - tf.where(len_b > len_a, head, 0) - (rest + 1) // 2
    return a, b


# --------------------------------------------------------------------------------------------------- SavedModel


@dataclass
class Serving:
    """What a recipe's ``serving(model, tokenizer, head)`` step returns: its named serving ``tf.function``s (each
    with an ``input_signature``; ``serving_default`` among them) and the trackables they capture (in-graph
    tokenizers, lookup tables). A single-task export writes them as they are; the multi-task export writes every
    task's under ``<task>`` / ``<task>_<name>`` in one SavedModel that holds the shared encoder once."""

    signatures: dict
    trackables: dict = field(default_factory=dict)

    def __post_init__(self):
        if "serving_default" not in self.signatures:
            raise ConfigError(f"Serving: no 'serving_default' among the signatures {sorted(self.signatures)}")


def export_serving(path, keras_model, serving: Serving) -> Path:
    """:func:`export_saved_model` of a recipe's :class:`Serving`."""
    rest = {name: fn for name, fn in serving.signatures.items() if name != "serving_default"}
    return export_saved_model(path, keras_model, serving.signatures["serving_default"], signatures=rest,
                              extra=serving.trackables)


def trace_signature(function, what: str):
    """The traced (concrete) function of a serving ``tf.function`` with an ``input_signature``, or a ``ConfigError``
    naming ``what``. An export holds these, not the tf.functions: saving lists a tf.function's functions again inside
    its save context, which is part of the trace cache key, so every signature would be traced a second time."""
    if not hasattr(function, "get_concrete_function"):
        raise ConfigError(f"export: {what} must be a tf.function, got {type(function).__name__}")
    try:
        return function.get_concrete_function()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"export: {what} needs an input_signature ({exc})") from None


def export_saved_model(path, keras_model, serving_fn, *, signatures=None, extra=None) -> Path:
    """Write a SavedModel serving ``serving_fn`` (a ``tf.function`` with an ``input_signature``) to ``path``.

    The directory is written to a temporary sibling and renamed onto ``path`` (an old export is replaced whole).
    Only the model's variables are tracked, not the Keras objects, so loading needs neither bertkit nor
    keras-bert: ``import tensorflow_text`` (registers the WordPiece op), then
    ``tf.saved_model.load(path).signatures["serving_default"](texts=...)``. ``signatures`` adds more named
    ``tf.function``s; ``extra`` is a dict of further trackables (e.g. a lookup table) the functions capture.
    """
    from bertkit.fileio import atomic_dir

    functions = {"serving_default": serving_fn, **(signatures or {})}
    concrete = {name: trace_signature(fn, f"signature {name!r}") for name, fn in functions.items()}
    module = tf.Module()
    module.model_variables = list(keras_model.variables)
    for name, function in concrete.items():
        setattr(module, name, function)
    for name, obj in (extra or {}).items():
        setattr(module, name, obj)
    path = Path(path)
    with atomic_dir(path) as tmp:
        tf.saved_model.save(module, str(tmp), signatures=concrete)
    return path
