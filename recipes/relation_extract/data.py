"""Reading relation-extraction data: JSONL ``{"text", "spo_list": [{"subject", "predicate", "object"}]}`` with
optional ``subject_start`` / ``object_start`` character offsets, checked line by line (any problem is one
``DataError`` naming the file, line and field), plus what the reader has to say about a file (``DataNotes``)."""

from __future__ import annotations

from dataclasses import dataclass, field

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
    triples: list[Triple]
    path: str = "<input>"
    line: int | None = None


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


def parse_example(record: dict, path, line: int) -> Example:
    """One JSONL record -> Example; any problem is a DataError naming the file, line and field."""
    text = record.get("text")
    if not isinstance(text, str) or not text.strip():
        raise DataError(path, line, "text", "missing or not a non-empty string")
    spo_list = record.get("spo_list", None)
    if spo_list is None:
        raise DataError(path, line, "spo_list", "missing (use [] for a sentence without triples)")
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
    return Example(text, triples, str(path), line)


def read_examples(path) -> list[Example]:
    """All sentences of a JSONL file (an empty ``spo_list`` is valid: a sentence without triples)."""
    examples = [parse_example(record, path, line) for line, record in iter_jsonl(path)]
    if not examples:
        raise DataError(path, None, None, "no sentences")
    return examples


def predicate_vocab(examples: list[Example]) -> list[str]:
    return sorted({t.predicate for e in examples for t in e.triples})


def check_predicates(examples: list[Example], predicates: list[str], notes: DataNotes) -> None:
    """Unknown predicates at test time are a counted warning: the triple stays gold (a guaranteed miss)."""
    known = set(predicates)
    for e in examples:
        for i, t in enumerate(e.triples):
            if t.predicate not in known:
                notes.unknown_predicates += 1
                notes.warn(f"{e.path}:{e.line}: field 'spo_list[{i}].predicate': {t.predicate!r} was not in the "
                           f"training data; this triple cannot be predicted")
