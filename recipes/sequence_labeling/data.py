"""Input side of the sequence labeling recipe (``task.py`` tells the story): the JSONL and CoNLL readers, the tag
scheme checks (BIO/IOB2 or BIOES, with optional repair), and the split of raw text into words with exact offsets.

Importing this module builds nothing.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from bertkit.errors import DataError
from bertkit.fileio import iter_jsonl, read_text, require

SCHEMES = {"bio": ("B", "I"), "bioes": ("B", "I", "E", "S")}  # entity prefixes; "O" is outside in both
DOCSTART = "-DOCSTART-"
JSONL_SUFFIXES = (".jsonl", ".json")


# --------------------------------------------------------------------------------------------------------- readers
@dataclass
class Sentence:
    """One example: its words (``tokens``), their tags (None when unlabelled) and where they come from.

    ``text`` is the text the words lie in and ``spans[i]`` word ``i``'s character offsets in it: a raw-text input's
    own text, or for token input the tokens joined by single spaces (the default)."""
    tokens: list[str]
    tags: list[str] | None          # None for unlabelled input (prediction, a competition test set)
    lines: list[int]                # 1-based source line of each token (JSONL: the record's line for all)
    text: str | None = None
    spans: list[tuple[int, int]] | None = None
    id: str | int | None = None     # the input record's id, copied to its prediction
    repaired: int = field(default=0, compare=False)   # tags rewritten by check_tags(repair=True)

    def __post_init__(self):
        if self.text is None:
            self.text, self.spans, start = " ".join(self.tokens), [], 0
            for token in self.tokens:
                self.spans.append((start, start + len(token)))
                start += len(token) + 1


@dataclass
class Corpus:
    path: str
    sentences: list[Sentence]
    scheme: str                     # "bio" or "bioes"
    repaired: int = 0               # tags rewritten by repair=True (see check_tags)


def read_corpus(path, *, scheme: str = "auto", repair: bool = False, labeled: bool | None = True,
                per_char: bool = False) -> Corpus:
    """Read JSONL (``.jsonl``/``.json``, see ``sentences_from_records``) or CoNLL columns (anything else, see
    ``read_conll``), then check the tags (``check_tags``). ``labeled``: True requires tags, False ignores them, None
    takes what the file has (all sentences or none)."""
    path = str(path)
    if Path(path).suffix.lower() in JSONL_SUFFIXES:
        return corpus_from_records(iter_jsonl(path), path, scheme=scheme, repair=repair, labeled=labeled,
                                   per_char=per_char)
    return make_corpus(list(read_conll(path, labeled)), path, scheme=scheme, repair=repair)


def corpus_from_records(records, path, *, scheme: str = "auto", repair: bool = False, labeled: bool | None = None,
                        per_char: bool = False) -> Corpus:
    """The checked corpus of ``(line, record)`` pairs (``sentences_from_records``) read from ``path``."""
    sentences = sentences_from_records(records, path, labeled=labeled, per_char=per_char)
    return make_corpus(sentences, path, scheme=scheme, repair=repair)


def make_corpus(sentences: list[Sentence], path, *, scheme: str = "auto", repair: bool = False) -> Corpus:
    """A checked corpus: no sentence at all is an error; labelled sentences get ``check_tags``."""
    if not sentences:
        raise DataError(path, None, None, "no sentences in the input")
    if sentences[0].tags is None:
        return Corpus(str(path), sentences, scheme if scheme != "auto" else "bio")
    scheme, repaired = check_tags(sentences, path, scheme=scheme, repair=repair)
    return Corpus(str(path), sentences, scheme, repaired)


def sentences_from_records(records, path, *, labeled: bool | None = None, per_char: bool = False) -> list[Sentence]:
    """One ``Sentence`` per ``(line, record)``: ``{"id"?, "tokens": [...], "tags"?: [...]}``, or unlabelled raw text
    ``{"id"?, "text": "..."}`` split into words by ``split_words`` (one word per character with ``per_char``).

    ``labeled``: True requires ``tags``, False ignores them, None: labelled when the first record has tags, and then
    every record needs them (all or none)."""
    sentences, all_or_none = [], labeled is None
    for line, record in records:
        if labeled is None:
            labeled = record.get("tags") is not None
        elif all_or_none and not labeled and record.get("tags") is not None:
            raise DataError(path, line, "tags", "tags here but not on the first line: tag every sentence or none")
        if record.get("tokens") is None and record.get("text") is not None:
            if labeled:
                raise DataError(path, line, "tokens", "missing: tagged sentences need their tokens (raw \"text\" "
                                                      "is prediction input)")
            text = require(record, "text", path, line)
            words = split_words(text, per_char=per_char)
            sentences.append(Sentence([w for w, _, _ in words], None, [line] * len(words), text,
                                      [(start, end) for _, start, end in words], record.get("id")))
            continue
        tokens = require(record, "tokens", path, line, kind=list)
        for i, token in enumerate(tokens):
            if not isinstance(token, str) or not token or token.isspace():
                raise DataError(path, line, "tokens", f"token {i} is {token!r}: expected a non-blank string")
        tags = None
        if labeled:
            tags = require(record, "tags", path, line, kind=list)
            if len(tags) != len(tokens):
                raise DataError(path, line, "tags", f"{len(tags)} tags for {len(tokens)} tokens")
            for i, tag in enumerate(tags):
                if not isinstance(tag, str) or not tag:
                    raise DataError(path, line, "tags", f"tag {i} is {tag!r}: expected a non-empty string")
            tags = list(tags)
        sentences.append(Sentence(list(tokens), tags, [line] * len(tokens), id=record.get("id")))
    return sentences


def read_conll(path, labeled: bool | None = True):
    """CoNLL columns: every token line of a file must have the same number of columns (token first, tag last).
    ``labeled`` None: a file of one column is unlabelled, two or more are token ... tag."""
    tokens, tags, lines, columns = [], [], [], None
    for line_no, line in enumerate(read_text(path).split("\n"), start=1):
        fields = line.split()
        if not fields or fields[0] == DOCSTART:   # blank line or document start: a sentence break
            if tokens:
                yield Sentence(tokens, tags if labeled else None, lines)
            tokens, tags, lines = [], [], []
            continue
        if columns is None:
            columns = len(fields)
            if labeled and columns < 2:
                raise DataError(path, line_no, "columns", "1 column; expected the token first and the tag last")
            if labeled is None:
                labeled = columns >= 2
        if len(fields) != columns:
            raise DataError(path, line_no, "columns", f"{len(fields)} columns, expected {columns} as on the first "
                                                      f"token line")
        tokens.append(fields[0])
        tags.append(fields[-1])
        lines.append(line_no)
    if tokens:
        yield Sentence(tokens, tags if labeled else None, lines)


# ------------------------------------------------------------------------------------------------------ tag scheme
def split_tag(tag: str) -> tuple[str, str | None]:
    """``"B-PER" -> ("B", "PER")``, ``"O" -> ("O", None)``; anything else -> ``(tag, None)`` (invalid)."""
    if tag == "O":
        return "O", None
    prefix, dash, kind = tag.partition("-")
    return (prefix, kind) if dash and kind else (tag, None)


def check_tags(sentences: list[Sentence], path, *, scheme: str = "auto", repair: bool = False) -> tuple[str, int]:
    """Validate the tags of every sentence; returns ``(scheme, repaired_count)``.

    The scheme is BIO/IOB2 (``B-X I-X O``) or BIOES (adds ``E-X S-X``); ``auto`` picks BIOES when an ``E-``/``S-``
    tag occurs. Any other tag is an error. An entity must start with ``B-`` (or ``S-``): an ``I-X``/``E-X`` that
    follows neither ``B-X`` nor ``I-X`` (IOB1 style, or a broken annotation) is an error, unless ``repair=True``,
    which rewrites it to ``B-X`` (``I-``) or ``S-X`` (``E-``) and counts it. In BIOES an entity must also end with
    ``E-``/``S-``: a ``B-X``/``I-X`` not followed by ``I-X``/``E-X`` is repaired to ``S-X``/``E-X`` likewise.
    """
    if scheme not in ("auto", *SCHEMES):
        raise ValueError(f"unknown scheme {scheme!r}")
    prefixes = set()
    for sentence in sentences:
        for tag, line in zip(sentence.tags, sentence.lines):
            prefix, kind = split_tag(tag)
            if prefix != "O" and (kind is None or prefix not in SCHEMES["bioes"]):
                raise DataError(path, line, "tags", f"unknown tag scheme: tag {tag!r}; expected O or B-/I- (BIO, "
                                                    f"IOB2) or B-/I-/E-/S- (BIOES) followed by a type")
            prefixes.add(prefix)
    if scheme == "auto":
        scheme = "bioes" if prefixes & {"E", "S"} else "bio"
    elif scheme == "bio" and prefixes & {"E", "S"}:
        bad = next((t, ln) for s in sentences for t, ln in zip(s.tags, s.lines) if t[:2] in ("E-", "S-"))
        raise DataError(path, bad[1], "tags", f"tag {bad[0]!r} is not BIO (the file uses BIOES: pass scheme bioes)")
    repaired = 0
    for sentence in sentences:
        tags = sentence.tags
        for i, tag in enumerate(tags):
            prefix, kind = split_tag(tag)
            prev_prefix, prev_kind = split_tag(tags[i - 1]) if i else ("O", None)
            continues = prev_kind == kind and prev_prefix in ("B", "I")
            fix = None
            if prefix in ("I", "E") and not continues:
                fix, why = ("B" if prefix == "I" else "S"), "starts an entity (must be B-)"
            if scheme == "bioes" and fix is None and prefix in ("B", "I"):
                next_prefix, next_kind = split_tag(tags[i + 1]) if i + 1 < len(tags) else ("O", None)
                if not (next_kind == kind and next_prefix in ("I", "E")):
                    fix, why = ("S" if prefix == "B" else "E"), "ends an entity (must be E- or S- in BIOES)"
            if fix is not None:
                if not repair:
                    raise DataError(path, sentence.lines[i], "tags",
                                    f"tag {tag!r} at token {i} {why}; pass --repair-tags to rewrite it as "
                                    f"{fix}-{kind}")
                tags[i] = f"{fix}-{kind}"
                sentence.repaired += 1
                repaired += 1
    return scheme, repaired


# ------------------------------------------------------------------------------------------------ raw text to words
# Words of raw English text, close to CoNLL tokenisation: abbreviations like "U.S." stay whole, words keep inner
# hyphens and apostrophes ("Jean-Pierre", "don't", "O'Neill") but the possessive "'s" is a word of its own
# ("Germany 's"), every other punctuation or symbol character is a word of its own.
# Invisible format/control characters (category C*, e.g. a zero-width space) are not words. WORD_PATTERN_RE2 is the
# same rule for the exported graph (``export.py``; RE2 has no Unicode \w / \s, but has \p{..} classes).
WORD_PATTERN = re.compile(r"(?:[^\W\d_]\.){2,}|\w+(?:-\w+)*(?:['’](?:\w{2,}|[^sS\W]))*|['’][sS]\b|[^\w\s]")
WORD_PATTERN_RE2 = (r"(?:\p{L}\.){2,}|[\p{L}\p{N}_]+(?:-[\p{L}\p{N}_]+)*"
                    r"(?:['’](?:[\p{L}\p{N}_]{2,}|[^sS\s\p{P}\p{S}\p{Z}\p{C}]))*"
                    r"|['’][sS]\b|[^\p{L}\p{N}_\s\p{Z}\p{C}]")
SPACE_PATTERN_RE2 = r"[\s\p{Z}\p{C}]+"


def _visible(word: str) -> bool:
    return not all(unicodedata.category(ch)[0] in "CZ" for ch in word)


def split_words(text: str, *, per_char: bool = False) -> list[tuple[str, int, int]]:
    """``(word, start, end)`` with ``text[start:end] == word``; ``per_char`` (Chinese): one word per character that
    is not whitespace or invisible."""
    if per_char:
        return [(ch, i, i + 1) for i, ch in enumerate(text) if not ch.isspace() and _visible(ch)]
    return [(m.group(), m.start(), m.end()) for m in WORD_PATTERN.finditer(text) if _visible(m.group())]
