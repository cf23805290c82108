"""Reading relation-extraction data: JSONL ``{"id"?, "text", "spo_list"?: [{"subject", "predicate", "object"}]}``
with optional ``subject_start`` / ``object_start`` character offsets, checked line by line (any problem is one
``DataError`` naming the file, line and field), plus what the reader has to say about a file (``DataNotes``).

A file is labelled (every line has a ``spo_list``, ``[]`` for a sentence without triples) or unlabelled (no line
has one: input to predict), never a mix."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from bertkit.errors import DataError
from bertkit.fileio import iter_jsonl


@dataclass(frozen=True)
class Triple:
    subject: str
    predicate: str
    object: str
    subject_start: int | None = None  # character offset of the annotated subject mention, if pinned
    object_start: int | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.subject, self.predicate, self.object)


@dataclass
class Example:
    text: str
    triples: list[Triple] | None  # None: unlabelled (prediction input)
    path: str = "<input>"
    line: int | None = None
    id: str | int | None = None


@dataclass
class DataNotes:
    """What the reader and the feature builder had to say about a file (goes into the report)."""
    path: str
    sentences: int = 0
    triples: int = 0
    without_offsets: int = 0          # entity strings labelled at every occurrence
    unknown_predicates: int = 0       # triples whose predicate the model was not trained on (always missed)
    truncated: int = 0                # triples with a mention cut off by --max-len (cannot be found)
    misaligned: int = 0               # entity boundaries inside a token (decoded span is wider)
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str, limit: int = 10) -> None:
        if len(self.warnings) < limit:
            self.warnings.append(message)

    def add_counts(self, other: "DataNotes") -> None:
        for name, value in other.counts().items():
            if isinstance(value, int):
                setattr(self, name, getattr(self, name) + value)

    def counts(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "warnings"}

    def summary(self) -> str:
        return (f"{self.path}: {self.sentences} sentences, {self.triples} triples; {self.without_offsets} entity "
                f"mentions without offsets (every occurrence labelled); {self.unknown_predicates} with a predicate "
                f"unseen in training; {self.truncated} cut off by --max-len; {self.misaligned} not on token "
                f"boundaries")


def _optional_offset(spo: dict, key: str, text: str, value: str, path, line: int, where: str) -> int | None:
    start = spo.get(key)
    if start is None:
        return None
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start <= len(text) - len(value):
        raise DataError(path, line, f"{where}.{key}", f"expected a character offset into the text, got {start!r}")
    if text[start:start + len(value)] != value:
        raise DataError(path, line, f"{where}.{key}",
                        f"text at offset {start} is {text[start:start + len(value)]!r}, not {value!r}")
    return start


def _parse_triples(spo_list, text: str, path, line: int) -> list[Triple]:
    if not isinstance(spo_list, list):
        raise DataError(path, line, "spo_list", f"expected a list, got {type(spo_list).__name__}")
    triples = []
    for i, spo in enumerate(spo_list):
        where = f"spo_list[{i}]"
        if not isinstance(spo, dict):
            raise DataError(path, line, where, f"expected an object, got {type(spo).__name__}")
        values = {}
        for part in ("subject", "predicate", "object"):
            value = spo.get(part)
            if not isinstance(value, str) or not value.strip():
                raise DataError(path, line, f"{where}.{part}", "missing or not a non-empty string")
            if part != "predicate" and value not in text:
                raise DataError(path, line, f"{where}.{part}", f"{value!r} does not occur in the text")
            values[part] = value
        triples.append(Triple(
            values["subject"], values["predicate"], values["object"],
            _optional_offset(spo, "subject_start", text, values["subject"], path, line, where),
            _optional_offset(spo, "object_start", text, values["object"], path, line, where)))
    return triples


def parse_example(record: dict, path, line: int, *, labelled: bool = True) -> Example:
    """One JSONL record -> Example; any problem is a DataError naming the file, line and field. ``labelled``: the
    file's lines carry gold triples (then this one needs its ``spo_list``), else none may."""
    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        raise DataError(path, line, "text", "missing or not a non-empty string")
    spo_list = record.get("spo_list")
    if not labelled:
        if spo_list is not None:
            raise DataError(path, line, "spo_list", "gold triples here but not on the first line: give every line "
                                                    "a spo_list (or none)")
        return Example(text, None, str(path), line, record.get("id"))
    if spo_list is None:
        raise DataError(path, line, "spo_list", "missing (use [] for a sentence without triples; the first line "
                                                "has a spo_list, so every line needs one)")
    return Example(text, _parse_triples(spo_list, text, path, line), str(path), line, record.get("id"))


def to_examples(records, path, args=None) -> list[Example]:
    """Examples of ``(line, record)`` pairs read from ``path``: labelled when the first record has a ``spo_list``
    (then every record needs one; an empty list is a sentence without triples), unlabelled otherwise. ``args`` is
    unused (the recipe contract's signature)."""
    examples, labelled = [], None
    for line, record in records:
        if labelled is None:
            labelled = record.get("spo_list") is not None
        examples.append(parse_example(record, path, line, labelled=labelled))
    if not examples:
        raise DataError(path, None, None, "no sentences")
    return examples


def read_examples(path, args=None) -> list[Example]:
    """All sentences of a JSONL file (see :func:`to_examples`)."""
    return to_examples(iter_jsonl(path), path)


def predicate_vocab(examples: list[Example]) -> list[str]:
    return sorted({t.predicate for e in examples for t in e.triples or ()})


def check_predicates(examples: list[Example], predicates: list[str], notes: DataNotes) -> None:
    """Unknown predicates at test time are a counted warning: the triple stays gold (a guaranteed miss)."""
    known = set(predicates)
    for e in examples:
        for i, t in enumerate(e.triples or ()):
            if t.predicate not in known:
                notes.unknown_predicates += 1
                notes.warn(f"{e.path}:{e.line}: field 'spo_list[{i}].predicate': {t.predicate!r} was not in the "
                           f"training data; this triple cannot be predicted")
