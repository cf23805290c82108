"""BERT WordPiece tokenization with exact character offsets, plus a one-token-per-character mode for Chinese.

The rules are Google BERT's ``tokenization.py`` (the ones keras-bert's ``Tokenizer`` copies):

* clean: drop ``\\x00``, ``\\ufffd`` and control characters (categories Cc/Cf except tab/newline/CR); whitespace
  (space, tab, newline, CR, category Zs) separates words;
* every CJK ideograph is a word of its own;
* uncased only: strip accents (NFD, drop combining marks, category Mn) and lowercase;
* every punctuation character (ASCII symbols ``!"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~`` and category P*) is a word
  of its own;
* WordPiece: greedy longest-match-first over the vocab, ``##`` marks a continuation piece; a word longer than 100
  characters, or one with a part that matches no piece, becomes a single ``[UNK]``.

Offsets are computed by construction rather than by re-matching tokens against the text: every normalised
character remembers the index of the original character it came from, so a piece's offsets are
``(index of its first character, index of its last character + 1)`` in the original string. Offsets are code-point
indices (Python string indices), end exclusive; special tokens get ``(0, 0)``.

Normalisation works character by character (accents stripped, then lowercased, like Hugging Face ``tokenizers``'
``BertNormalizer``), so offsets stay exact when one character becomes several (``'İ'``, Hangul syllables
decomposing to jamo) or none (combining accents, zero-width joiners). The only known differences from Google's
string-at-a-time Python: a Greek capital sigma at the end of a word lowercases to ``σ`` (Python's ``str.lower`` of a
whole word gives ``ς``), exactly as in ``tokenizers``. A piece that is only part of one original character's
expansion (a Hangul jamo) gets that whole character's offsets, so several pieces can share one span.

Relation to keras-bert: the character classes and basic splitting are those of ``keras_bert.Tokenizer`` (the tests
check every code point against it), but this is not a subclass: importing keras-bert imports TensorFlow; its
WordPiece falls back to single characters where BERT emits one ``[UNK]`` for the word; and its ``rematch``
recovers offsets by fuzzy alignment, where here they are exact by construction.

Google BERT keeps private-use characters (category Co) as letters of an (unknown) word, while ``tokenizers`` deletes
them; this module follows Google. Text typed as ``[CLS]`` is plain text, never the special token.

Everything is pure Python; importing this module reads no file and imports no TensorFlow.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from bertkit.errors import CheckpointError, ConfigError

__all__ = ["Encoding", "Tokenizer", "load_vocab", "infer_lowercase"]

MAX_CHARS_PER_WORD = 100  # BERT's max_input_chars_per_word: longer words become [UNK]
_CACHE_LIMIT = 300_000  # per-tokenizer cache entries (words / characters) before the cache is dropped

CLS, SEP, PAD, UNK, SPACE_TOKEN = "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[unused1]"


# ------------------------------------------------------------------------------------------- BERT character classes
def is_whitespace(ch: str) -> bool:
    """BERT's whitespace: space, tab, newline, carriage return and Unicode category Zs."""
    if ch in " \t\n\r":
        return True
    return unicodedata.category(ch) == "Zs"


def is_control(ch: str) -> bool:
    """BERT's control characters (removed): categories Cc and Cf, except tab/newline/CR (which are whitespace)."""
    if ch in "\t\n\r":
        return False
    return unicodedata.category(ch) in ("Cc", "Cf")


def is_punctuation(ch: str) -> bool:
    """BERT's punctuation: all non-alphanumeric ASCII symbols (``$``, ``^``, ``~``... too) and categories P*."""
    cp = ord(ch)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(ch).startswith("P")


def is_cjk(ch: str) -> bool:
    """BERT's CJK ideographs (CJK Unified Ideographs blocks and compatibility ideographs; not kana or hangul)."""
    cp = ord(ch)
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B820 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


# Character plans: what one original character contributes to the normalised text.
#   a str          -> these normalised characters, all inside the current word ("" for a removed character)
#   _BREAK         -> whitespace: ends the current word
#   a tuple of ops -> (kind, char) with kind _WORD (joins the word), _ALONE (a word of its own), _BREAK (ends it;
#                     char is " " for whitespace produced by normalisation, "" for the boundaries around a CJK char)
_WORD, _ALONE, _BREAK = 0, 1, 2

_ASCII_PUNCT = "".join(chr(c) for c in range(33, 127) if is_punctuation(chr(c)))
# ASCII text without control characters needs no per-character plan: one regex finds its words.
_ASCII_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ASCII_WORD_RE = re.compile(r"[%s]|[^ \t\n\r%s]+" % (re.escape(_ASCII_PUNCT), re.escape(_ASCII_PUNCT)))


def _normalize_char(ch: str, lowercase: bool) -> str:
    """One character as the uncased model sees it: NFD, combining marks (Mn) dropped, lowercased."""
    if not lowercase:
        return ch
    decomposed = unicodedata.normalize("NFD", ch)
    stripped = "".join(c for c in decomposed if unicodedata.category(c) != "Mn")
    return stripped.lower()


def _is_plain_unassigned(ch: str) -> bool:
    """An unassigned (Cn) or private-use (Co) code point outside the CJK blocks: no case, no decomposition, no
    class of its own, so its plan is the character itself (a word character). Nearly 90 % of all code points are
    such; :func:`bertkit.export.char_tables` skips them with this test, :func:`_plan_char` starts with it."""
    return unicodedata.category(ch) in ("Cn", "Co") and not is_cjk(ch)


def _plan_char(ch: str, lowercase: bool):
    if _is_plain_unassigned(ch):
        return ch
    cp = ord(ch)
    if cp == 0 or cp == 0xFFFD or is_control(ch):
        return ""
    if is_whitespace(ch):
        return _BREAK
    normalized = _normalize_char(ch, lowercase)
    if is_cjk(ch):  # a word of its own, whatever its (compatibility-ideograph) normalisation is
        ops = [(_BREAK, "")]
        ops += [(_ALONE if is_punctuation(n) else _WORD, n) for n in normalized]
        ops.append((_BREAK, ""))
        return tuple(ops)
    ops = []
    for n in normalized:
        if is_whitespace(n) or n.isspace():
            ops.append((_BREAK, " "))
        elif is_punctuation(n):
            ops.append((_ALONE, n))
        else:
            ops.append((_WORD, n))
    if all(kind == _WORD for kind, _ in ops):
        return normalized
    return tuple(ops)


# ----------------------------------------------------------------------------------------------------- vocabulary
def load_vocab(path) -> dict[str, int]:
    """Read a BERT ``vocab.txt``: one token per line, id = line index (0-based), surrounding whitespace stripped
    as in Google BERT. A missing file -> ``CheckpointError``; non-UTF-8 -> ``DataError`` naming the line."""
    from bertkit.fileio import read_text

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such vocab file (expected a BERT vocab.txt: one token per line)")
    text = read_text(path)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    vocab: dict[str, int] = {}
    for index, line in enumerate(lines):
        vocab[line.strip()] = index
    if not vocab:
        raise CheckpointError(path, "empty vocab file")
    return vocab


def infer_lowercase(bert_dir, vocab: dict[str, int] | None = None) -> bool:
    """Whether the checkpoint in ``bert_dir`` expects lowercased text, decided by the first rule that applies:

    1. ``bert_config.json`` has a boolean ``"do_lower_case"`` key: use it;
    2. the directory name (e.g. ``uncased_L-12_H-768_A-12``, ``cased_L-12_H-768_A-12``,
       ``chinese_L-12_H-768_A-12``): contains ``uncased`` -> True; else ``cased`` -> False; else ``chinese`` -> True
       (Google's Chinese model was trained uncased-style);
    3. the vocab: no word token with an uppercase ASCII letter (``[CLS]``-style special tokens ignored) -> True,
       else False.
    """
    bert_dir = Path(bert_dir)
    config_path = bert_dir / "bert_config.json"
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as e:
            raise CheckpointError(config_path, f"not valid JSON: {e}") from None
        value = config.get("do_lower_case") if isinstance(config, dict) else None
        if isinstance(value, bool):
            return value
    name = bert_dir.resolve().name.lower()
    if "uncased" in name:
        return True
    if "cased" in name:
        return False
    if "chinese" in name:
        return True
    if vocab is None:
        vocab = load_vocab(bert_dir / "vocab.txt")
    for token in vocab:
        if token.startswith("[") and token.endswith("]"):
            continue
        if any("A" <= c <= "Z" for c in token):
            return False
    return True


# --------------------------------------------------------------------------------------------------------- encoding
@dataclass(slots=True)
class Encoding:
    """One encoded example. ``offsets[i]`` is into the original text of token ``i``'s sequence (text a, text b, or
    for :meth:`Tokenizer.encode_words` the word ``word_ids[i]``); special tokens have ``(0, 0)``."""

    token_ids: list[int]
    segment_ids: list[int]
    tokens: list[str]
    offsets: list[tuple[int, int]]
    sequence_ids: list[int | None]  # 0 = text a, 1 = text b, None = [CLS]/[SEP]
    word_ids: list[int | None] | None = None  # encode_words: index of the input word of each piece

    def __len__(self) -> int:
        return len(self.token_ids)

    def char_to_token(self, char_index: int, sequence_id: int = 0) -> int | None:
        """Index of the token of sequence ``sequence_id`` covering character ``char_index`` of that sequence's text;
        None for a character no token covers (whitespace, removed characters, truncated text)."""
        for i, (start, end) in enumerate(self.offsets):
            if start <= char_index < end and self.sequence_ids[i] == sequence_id:
                return i
        return None

    def token_span(self, start: int, end: int, sequence_id: int = 0) -> tuple[int, int] | None:
        """Token range ``(first, stop)`` (stop exclusive) of the tokens of sequence ``sequence_id`` that overlap the
        character span ``[start, end)`` of its text, e.g. an answer or entity span; None if no token overlaps it
        (the span was truncated away or holds only whitespace/removed characters)."""
        first = stop = None
        for i, (token_start, token_end) in enumerate(self.offsets):
            if self.sequence_ids[i] != sequence_id or token_end <= start or token_start >= end:
                continue
            if first is None:
                first = i
            stop = i + 1
        return None if first is None else (first, stop)


class Tokenizer:
    """BERT WordPiece tokenizer (cased or uncased) or per-character tokenizer, with exact character offsets.

    ``vocab`` is a path to ``vocab.txt`` or a ``{token: id}`` dict. ``lowercase=True`` is the uncased model's
    normalisation (accents stripped, lowercased). ``per_char=True`` (for Chinese) gives exactly one token per input
    character, so character labels align with tokens: whitespace -> ``[unused1]``, a character not in the vocab
    (after lowercasing and accent stripping if uncased) -> ``[UNK]``; offsets are ``(i, i + 1)``.
    """

    def __init__(self, vocab: str | os.PathLike | dict[str, int], *, lowercase: bool = True, per_char: bool = False):
        if isinstance(vocab, (str, os.PathLike)):
            self.vocab_path: Path | None = Path(vocab)
            vocab = load_vocab(vocab)
        elif isinstance(vocab, dict):
            self.vocab_path = None
            vocab = dict(vocab)
        else:
            raise TypeError(f"vocab must be a path to vocab.txt or a dict of token -> id, got {type(vocab).__name__}")
        where = str(self.vocab_path) if self.vocab_path is not None else "<vocab dict>"
        required = [CLS, SEP, UNK] + ([SPACE_TOKEN] if per_char else [])
        missing = [t for t in required if t not in vocab]
        if missing:
            raise CheckpointError(where, f"vocab has no {', '.join(missing)} token")
        self.vocab: dict[str, int] = vocab
        self.lowercase = bool(lowercase)
        self.per_char = bool(per_char)
        self.cls_id = vocab[CLS]
        self.sep_id = vocab[SEP]
        self.unk_id = vocab[UNK]
        self.pad_id = vocab.get(PAD, 0)
        self.space_id = vocab.get(SPACE_TOKEN)
        size = max(vocab.values()) + 1
        self._id_to_token: list[str | None] = [None] * size
        for token, index in vocab.items():
            self._id_to_token[index] = token
        self._max_piece_chars = max(len(t) for t in vocab)
        # Caches (per instance: they depend on the vocab and the case): normalised word -> pieces, char -> plan.
        self._piece_cache: dict[str, tuple] = {}
        self._char_plans: dict[str, object] = {}
        self._char_token_cache: dict[str, tuple[str, int]] = {}

    @classmethod
    def from_bert_dir(cls, bert_dir, *, per_char: bool = False, lowercase: bool | None = None) -> "Tokenizer":
        """The tokenizer of a Google-format BERT directory (its ``vocab.txt``).

        Case: an explicit ``lowercase`` wins; otherwise :func:`infer_lowercase` decides (``bert_config.json``'s
        ``do_lower_case`` if present, else ``uncased``/``cased``/``chinese`` in the directory name, else uncased iff
        the vocab has no uppercase ASCII word tokens).
        """
        from bertkit.encoder import resolve_bert_dir  # here: encoder imports this module

        bert_dir = Path(bert_dir)
        if not bert_dir.is_dir():
            raise CheckpointError(bert_dir, "no such BERT directory")
        if (bert_dir / "config.json").is_file() and not (bert_dir / "bert_config.json").is_file():
            bert_dir = resolve_bert_dir(bert_dir)  # a Hugging Face folder -> its converted Google checkpoint
        vocab_path = bert_dir / "vocab.txt"
        if not vocab_path.is_file():
            raise CheckpointError(bert_dir, "missing vocab.txt")
        vocab = load_vocab(vocab_path)
        if lowercase is None:
            lowercase = infer_lowercase(bert_dir, vocab)
        tokenizer = cls(vocab, lowercase=lowercase, per_char=per_char)
        tokenizer.vocab_path = vocab_path
        return tokenizer

    def __repr__(self) -> str:
        source = self.vocab_path or f"<{len(self.vocab)} tokens>"
        return f"Tokenizer({str(source)!r}, lowercase={self.lowercase}, per_char={self.per_char})"

    # ------------------------------------------------------------------------------------------------ normalising
    def _plan(self, ch: str):
        plan = self._char_plans.get(ch)
        if plan is None:
            if len(self._char_plans) > _CACHE_LIMIT:
                self._char_plans.clear()
            plan = self._char_plans[ch] = _plan_char(ch, self.lowercase)
        return plan

    def normalize(self, text: str) -> str:
        """``text`` as the model sees it before splitting: control characters removed, whitespace -> ``' '``, and
        for uncased accents stripped and lowercased. ``normalize(text[start:end])`` of a (non-``[UNK]``) token's
        offsets equals the token without ``##``."""
        out = []
        for ch in text:
            plan = self._plan(ch)
            if plan.__class__ is str:
                out.append(plan)
            elif plan == _BREAK:
                out.append(" ")
            else:
                out.extend(n for _, n in plan)
        return "".join(out)

    def _words(self, text: str) -> list[tuple[str, list[int] | int]]:
        """Basic tokenization: ``(normalised word, where)`` where ``where`` is the word's start index in ``text``
        when its characters map one-to-one onto ``text[start:start + len(word)]``, otherwise the list of original
        indices of each normalised character."""
        if text.isascii() and not _ASCII_CONTROL_RE.search(text):
            if self.lowercase:
                lowered = text.lower()  # ASCII lowercasing keeps every index
                return [(m.group(), m.start()) for m in _ASCII_WORD_RE.finditer(lowered)]
            return [(m.group(), m.start()) for m in _ASCII_WORD_RE.finditer(text)]
        words: list[tuple[str, list[int] | int]] = []
        chars: list[str] = []
        indices: list[int] = []
        plans = self._char_plans
        for i, ch in enumerate(text):
            plan = plans.get(ch)
            if plan is None:
                plan = self._plan(ch)
            if plan.__class__ is str:
                for n in plan:
                    chars.append(n)
                    indices.append(i)
                continue
            if plan == _BREAK:
                if chars:
                    words.append(("".join(chars), indices))
                    chars, indices = [], []
                continue
            for kind, n in plan:
                if kind == _WORD:
                    chars.append(n)
                    indices.append(i)
                    continue
                if chars:
                    words.append(("".join(chars), indices))
                    chars, indices = [], []
                if kind == _ALONE:
                    words.append((n, [i]))
        if chars:
            words.append(("".join(chars), indices))
        return words

    # -------------------------------------------------------------------------------------------------- WordPiece
    def _word_pieces(self, word: str) -> tuple:
        """WordPiece of one normalised word: ``((token, id, start, end), ...)`` with character positions in the
        word; ``[UNK]`` covering the whole word if it is too long or cannot be fully matched."""
        pieces = self._piece_cache.get(word)
        if pieces is not None:
            return pieces
        vocab = self.vocab
        n = len(word)
        found = []
        if n <= MAX_CHARS_PER_WORD:
            start = 0
            while start < n:
                end = min(n, start + self._max_piece_chars)
                while end > start:
                    piece = word[start:end] if start == 0 else "##" + word[start:end]
                    index = vocab.get(piece)
                    if index is not None:
                        found.append((piece, index, start, end))
                        break
                    end -= 1
                else:
                    found = None
                    break
                start = end
        else:
            found = None
        pieces = tuple(found) if found else ((UNK, self.unk_id, 0, n),)
        if len(self._piece_cache) > _CACHE_LIMIT:
            self._piece_cache.clear()
        self._piece_cache[word] = pieces
        return pieces

    def _char_token(self, ch: str) -> tuple[str, int]:
        """Per-character mode: the vocab token of one character."""
        hit = self._char_token_cache.get(ch)
        if hit is not None:
            return hit
        if ch.isspace():
            hit = (SPACE_TOKEN, self.space_id)
        else:
            candidates = [ch]
            if self.lowercase:
                candidates = [ch.lower(), _normalize_char(ch, True)]
            hit = (UNK, self.unk_id)
            for candidate in candidates:
                index = self.vocab.get(candidate)
                if index is not None:
                    hit = (candidate, index)
                    break
        if len(self._char_token_cache) > _CACHE_LIMIT:
            self._char_token_cache.clear()
        self._char_token_cache[ch] = hit
        return hit

    def _tokenize(self, text: str) -> tuple[list[str], list[int], list[tuple[int, int]]]:
        """Tokens, ids and offsets of one text (no special tokens)."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        tokens: list[str] = []
        ids: list[int] = []
        offsets: list[tuple[int, int]] = []
        if self.per_char:
            for i, ch in enumerate(text):
                token, index = self._char_token(ch)
                tokens.append(token)
                ids.append(index)
                offsets.append((i, i + 1))
            return tokens, ids, offsets
        word_pieces = self._word_pieces
        for word, where in self._words(text):
            pieces = word_pieces(word)
            if where.__class__ is int:
                for token, index, start, end in pieces:
                    tokens.append(token)
                    ids.append(index)
                    offsets.append((where + start, where + end))
            else:
                for token, index, start, end in pieces:
                    tokens.append(token)
                    ids.append(index)
                    offsets.append((where[start], where[end - 1] + 1))
        return tokens, ids, offsets

    # ------------------------------------------------------------------------------------------------- public API
    def tokenize(self, text: str) -> list[str]:
        """The WordPiece tokens of ``text`` (no ``[CLS]``/``[SEP]``)."""
        return self._tokenize(text)[0]

    def tokenize_with_offsets(self, text: str) -> tuple[list[str], list[tuple[int, int]]]:
        """Tokens of ``text`` and each token's ``(start, end)`` character offsets into ``text``."""
        tokens, _, offsets = self._tokenize(text)
        return tokens, offsets

    def tokenize_with_ids(self, text: str) -> tuple[list[str], list[int], list[tuple[int, int]]]:
        """Tokens, their ids and their offsets into ``text`` (no special tokens): for callers that pack sequences
        themselves (sliding windows over long passages)."""
        return self._tokenize(text)

    def convert_tokens_to_ids(self, tokens: Iterable[str]) -> list[int]:
        """Ids of tokens; tokens not in the vocab -> the ``[UNK]`` id."""
        get = self.vocab.get
        return [get(t, self.unk_id) for t in tokens]

    def convert_ids_to_tokens(self, ids) -> list[str]:
        """Tokens of ids (a list or a 1-D array). An id outside the vocab raises ``ValueError``."""
        out = []
        for index in np.asarray(ids).reshape(-1).tolist() if not isinstance(ids, list) else ids:
            index = int(index)
            token = self._id_to_token[index] if 0 <= index < len(self._id_to_token) else None
            if token is None:
                raise ValueError(f"token id {index} is not in the vocab ({len(self.vocab)} tokens)")
            out.append(token)
        return out

    def encode(self, text: str, text_b: str | None = None, *, max_len: int | None = 512) -> Encoding:
        """``[CLS] a [SEP]`` or ``[CLS] a [SEP] b [SEP]`` with segment ids 0 for ``[CLS] a [SEP]`` and 1 for
        ``b [SEP]``. If longer than ``max_len`` tokens, tokens are removed from the end of the longer text one at a
        time (from ``b`` on a tie), as in Google BERT. ``max_len=None`` never truncates."""
        tokens_a, ids_a, offsets_a = self._tokenize(text)
        if text_b is None:
            if max_len is not None:
                _check_max_len(max_len, 2)
                del tokens_a[max_len - 2:], ids_a[max_len - 2:], offsets_a[max_len - 2:]
            n_a = len(ids_a)
            return Encoding(
                token_ids=[self.cls_id, *ids_a, self.sep_id],
                segment_ids=[0] * (n_a + 2),
                tokens=[CLS, *tokens_a, SEP],
                offsets=[(0, 0), *offsets_a, (0, 0)],
                sequence_ids=[None, *([0] * n_a), None],
            )
        tokens_b, ids_b, offsets_b = self._tokenize(text_b)
        n_a, n_b = len(ids_a), len(ids_b)
        if max_len is not None:
            _check_max_len(max_len, 3)
            budget = max_len - 3
            # Longest-first: the same result as popping one token at a time from the longer side (b on ties).
            while n_a + n_b > budget:
                if n_a > n_b:
                    n_a -= 1
                else:
                    n_b -= 1
        return Encoding(
            token_ids=[self.cls_id, *ids_a[:n_a], self.sep_id, *ids_b[:n_b], self.sep_id],
            segment_ids=[0] * (n_a + 2) + [1] * (n_b + 1),
            tokens=[CLS, *tokens_a[:n_a], SEP, *tokens_b[:n_b], SEP],
            offsets=[(0, 0), *offsets_a[:n_a], (0, 0), *offsets_b[:n_b], (0, 0)],
            sequence_ids=[None, *([0] * n_a), None, *([1] * n_b), None],
        )

    def encode_words(self, words: Sequence[str], *, max_len: int | None = None) -> Encoding:
        """``[CLS] pieces of words[0] pieces of words[1] ... [SEP]`` for pre-split words (sequence labeling).

        ``word_ids[i]`` is the index of the word piece ``i`` came from (None for ``[CLS]``/``[SEP]``) and
        ``offsets[i]`` is into ``words[word_ids[i]]``. Every word gets at least one piece: a word that is empty after
        cleaning (whitespace, control characters) becomes ``[UNK]`` covering the whole word. With ``max_len``,
        pieces past ``max_len - 2`` are dropped (later words may then have no piece; split long inputs with
        :func:`bertkit.windows.split_windows` instead when every word matters).
        """
        if isinstance(words, str):
            raise TypeError("words must be a list of strings, not one string")
        ids: list[int] = [self.cls_id]
        tokens: list[str] = [CLS]
        offsets: list[tuple[int, int]] = [(0, 0)]
        word_ids: list[int | None] = [None]
        for word_index, word in enumerate(words):
            w_tokens, w_ids, w_offsets = self._tokenize(word)
            if not w_ids:
                w_tokens, w_ids, w_offsets = [UNK], [self.unk_id], [(0, len(word))]
            tokens.extend(w_tokens)
            ids.extend(w_ids)
            offsets.extend(w_offsets)
            word_ids.extend([word_index] * len(w_ids))
        if max_len is not None:
            _check_max_len(max_len, 2)
            keep = min(len(ids), max_len - 1)
            del ids[keep:], tokens[keep:], offsets[keep:], word_ids[keep:]
        ids.append(self.sep_id)
        tokens.append(SEP)
        offsets.append((0, 0))
        word_ids.append(None)
        return Encoding(
            token_ids=ids,
            segment_ids=[0] * len(ids),
            tokens=tokens,
            offsets=offsets,
            sequence_ids=[None if w is None else 0 for w in word_ids],
            word_ids=word_ids,
        )

    def encode_batch(self, texts: Sequence[str], texts_b: Sequence[str] | None = None, *,
                     max_len: int | None = 512) -> dict[str, np.ndarray]:
        """``token_ids`` and ``segment_ids`` of many texts (or pairs) as int32 arrays ``(batch, longest)``, padded
        with the ``[PAD]`` id (0) and segment 0."""
        if isinstance(texts, str) or (texts_b is not None and isinstance(texts_b, str)):
            raise TypeError("encode_batch takes lists of texts; use encode() for one text")
        texts = list(texts)
        if texts_b is not None:
            texts_b = list(texts_b)
            if len(texts_b) != len(texts):
                raise ValueError(f"texts has {len(texts)} items but texts_b has {len(texts_b)}")
            encodings = [self.encode(a, b, max_len=max_len) for a, b in zip(texts, texts_b)]
        else:
            encodings = [self.encode(a, max_len=max_len) for a in texts]
        longest = max((len(e.token_ids) for e in encodings), default=0)
        token_ids = np.full((len(encodings), longest), self.pad_id, dtype=np.int32)
        segment_ids = np.zeros((len(encodings), longest), dtype=np.int32)
        for row, e in enumerate(encodings):
            token_ids[row, : len(e.token_ids)] = e.token_ids
            segment_ids[row, : len(e.segment_ids)] = e.segment_ids
        return {"token_ids": token_ids, "segment_ids": segment_ids}


def _check_max_len(max_len, minimum: int) -> None:
    if isinstance(max_len, bool) or not isinstance(max_len, (int, np.integer)) or max_len < minimum:
        what = "a text pair" if minimum == 3 else "a text"
        raise ConfigError(f"max_len must be an integer >= {minimum} for {what} ([CLS]/[SEP] included), got {max_len!r}")
