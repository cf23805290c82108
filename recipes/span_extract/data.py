"""Reading span-extraction questions: the records, their checks and the SQuAD JSON walk (``task.read_examples`` and
``task.to_examples`` are the entry points the recipe calls).

Every question record -- a JSONL line, a SQuAD ``qas`` item merged with its paragraph, or the event-subject form
``{"id", "event_type", "text", "subject"}`` -- becomes an :class:`Example` here, checked: bad input raises one
``DataError`` naming file, line (JSONL) or id, and field; what ``--fix-answers`` repairs is counted in
:class:`ReadStats` and warned about. Gold answers are optional (prediction inputs, a competition test set), but
given on every record or on none.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bertkit.cli import say
from bertkit.errors import DataError
from bertkit.fileio import read_json


@dataclass
class Answer:
    text: str
    start: int | None  # None: a reference text that is not a span of the context (scored, never trained on)

    @property
    def end(self) -> int | None:
        return None if self.start is None else self.start + len(self.text)


@dataclass
class Example:
    id: str
    question: str
    context: str
    answers: list[Answer] | None  # None: unlabelled (prediction input); []: unanswerable (with --no-answer)
    meta: dict = field(default_factory=dict)  # e.g. {"domain": "grocery"} for per-domain breakdowns
    where: str = ""  # "path:line" (JSONL) or "path" (SQuAD JSON), for messages
    record_id: str | int | None = None  # the input's own "id" (``id`` falls back to the record's index)


@dataclass
class ReadStats:
    """What the reader fixed or skipped, for the report."""
    answers_moved: int = 0  # --fix-answers found the text elsewhere in the context
    answers_unplaced: int = 0  # --fix-answers could not find the text: kept for scoring only
    unanswerable: int = 0


def _warn(message: str) -> None:
    say(f"warning: {message}")


def _where(path, line) -> str:
    return f"{path}:{line}" if line else str(path)


def check_answer(context: str, text: str, start, *, path, line, qid, field_name, fix: bool, stats: ReadStats,
                  warn, locate: bool = False) -> Answer | None:
    """The answer if ``context[start:start+len(text)] == text``; else an error, or with ``fix`` the occurrence of
    ``text`` nearest to ``start`` (a warning) or, when the text is nowhere in the context, the text for scoring only
    (``start=None``, a warning). ``start=None`` given: a reference text for scoring only, unless ``locate`` (the
    event-subject form gives no offsets): then the first occurrence is the answer."""
    if start is not None and context[start:start + len(text)] == text:
        return Answer(text, start)
    found = [m.start() for m in re.finditer(re.escape(text), context)]
    if start is None and found and locate:
        return Answer(text, found[0])
    if start is None and not locate:
        return Answer(text, None)
    if not fix:
        at = "no start offset" if start is None else f"context[{start}:{start + len(text)}] is " \
                                                        f"{context[start:start + len(text)]!r}"
        hint = f"; it occurs at {found[:5]}" if found else "; it does not occur in the context"
        raise DataError(path, line, field_name, f"id {qid}: answer {text!r} does not match the context ({at})"
                                                f"{hint}. Fix the data, or pass --fix-answers to search for it")
    if not found:
        stats.answers_unplaced += 1
        warn(f"{_where(path, line)}: id {qid}: field {field_name!r}: answer {text!r:.60} is not in the context; "
             "kept for scoring only")
        return Answer(text, None)
    best = min(found, key=lambda s: abs(s - (start or 0)))
    stats.answers_moved += 1
    warn(f"{_where(path, line)}: id {qid}: field {field_name!r}: answer {text!r:.60} moved from {start} to {best}")
    return Answer(text, best)


def _answer_field(record: dict) -> str:
    return "subject" if "subject" in record else "answers"


def _make_example(record: dict, *, path, line, index, gold_field: str | None, fix_answers, allow_unanswerable,
                  stats, warn) -> Example:
    """One question record (JSONL or a SQuAD ``qas`` item merged with its context) -> Example, checked; its gold
    answers are in ``gold_field`` (``answers`` or ``subject``, as on the first record; None: unlabelled)."""
    qid = str(record.get("id", index))
    question_field = "question" if "question" in record or "event_type" not in record else "event_type"
    context_field = "context" if "context" in record or "text" not in record else "text"
    for name in (question_field, context_field):
        value = record.get(name)
        if not isinstance(value, str):
            raise DataError(path, line, name, f"id {qid}: " + ("missing" if value is None else
                                                             f"expected a string, got {type(value).__name__}"))
        if not value.strip():
            raise DataError(path, line, name, f"id {qid}: empty")
    question, context = record[question_field], record[context_field]
    if gold_field is not None and record.get(gold_field) is None:
        raise DataError(path, line, gold_field, f"id {qid}: missing (the first question has gold answers: give "
                                                f"them on every line or none)")
    if gold_field is None and record.get(_answer_field(record)) is not None:
        raise DataError(path, line, _answer_field(record), f"id {qid}: gold answers here but not on the first question: "
                                                  f"give them on every line or none")
    meta = {k: record[k] for k in ("domain", "title") if isinstance(record.get(k), str)}
    if question_field == "event_type":
        meta["event_type"] = question
    example = Example(qid, question, context, None, meta, _where(path, line), record.get("id"))
    if gold_field is None:
        return example
    answer_field = gold_field
    if answer_field == "subject":  # event-subject form: the subject text, located in the text
        raw = [{"text": record["subject"], "start": record.get("subject_start")}]
    else:
        raw = record["answers"]
        if not isinstance(raw, list):
            raise DataError(path, line, "answers", f"id {qid}: expected a list, got {type(raw).__name__}")
    answers: list[Answer] = []
    for i, item in enumerate(raw):
        name = answer_field if answer_field == "subject" else f"answers[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            raise DataError(path, line, name, f"id {qid}: expected {{\"text\": str, \"start\": int}}, got {item!r:.80}")
        start = item.get("start", item.get("answer_start"))
        if start is not None and (isinstance(start, bool) or not isinstance(start, int) or start < 0):
            raise DataError(path, line, f"{name}.start", f"id {qid}: expected a non-negative integer, got {start!r}")
        if not item["text"].strip():
            raise DataError(path, line, f"{name}.text", f"id {qid}: empty answer text")
        answer = check_answer(context, item["text"], start, path=path, line=line, qid=qid,
                              field_name=f"{name}.start" if name != "subject" else name, fix=fix_answers,
                              stats=stats, warn=warn, locate=name == "subject")
        if answer not in answers:
            answers.append(answer)
    if not answers:
        if not allow_unanswerable:
            raise DataError(path, line, answer_field, f"id {qid}: no answers; pass --no-answer to train and evaluate "
                                                      "SQuAD 2.0 style unanswerable questions")
        stats.unanswerable += 1
    example.answers = answers
    return example


def examples_from_records(items, path, *, fix_answers: bool = False, allow_unanswerable: bool = False,
                          stats: ReadStats | None = None, warn=_warn) -> list[Example]:
    """Examples from ``(line, record)`` pairs read from ``path`` (used in messages), checked. Labelled (gold
    ``answers`` or ``subject``) when the first record is, and then every record must be (all or none)."""
    stats = stats if stats is not None else ReadStats()
    ids = {}
    examples = []
    gold_field = None
    for index, (line, record) in enumerate(items):
        if index == 0 and record.get(_answer_field(record)) is not None:
            gold_field = _answer_field(record)
        example = _make_example(record, path=path, line=line, index=index, gold_field=gold_field,
                                fix_answers=fix_answers, allow_unanswerable=allow_unanswerable, stats=stats, warn=warn)
        if example.id in ids:
            raise DataError(path, line, "id", f"duplicate id {example.id!r} (first at {ids[example.id]})")
        ids[example.id] = example.where
        examples.append(example)
    if not examples:
        raise DataError(path, None, None, "no questions in the file")
    return examples


def iter_squad(path):
    """``(None, record)`` per question of a SQuAD JSON file, the record carrying its paragraph's context/title."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DataError(path, None, "data", 'expected SQuAD JSON {"data": [{"paragraphs": [...]}]}')
    for a, article in enumerate(data["data"]):
        paragraphs = article.get("paragraphs") if isinstance(article, dict) else None
        if not isinstance(paragraphs, list):
            raise DataError(path, None, f"data[{a}].paragraphs", "missing or not a list")
        for p, paragraph in enumerate(paragraphs):
            where = f"data[{a}].paragraphs[{p}]"
            if not isinstance(paragraph, dict) or not isinstance(paragraph.get("qas"), list):
                raise DataError(path, None, f"{where}.qas", "missing or not a list")
            for q, qa in enumerate(paragraph["qas"]):
                if not isinstance(qa, dict):
                    raise DataError(path, None, f"{where}.qas[{q}]", "expected an object")
                record = {"id": qa.get("id", f"{a}-{p}-{q}"), "question": qa.get("question"),
                          "context": paragraph.get("context"), "title": article.get("title"),
                          "answers": [] if qa.get("is_impossible") else qa.get("answers")}
                yield None, record
