"""Scoring span predictions: exact match and token F1 with the SQuAD normalisation, or the CMRC 2018
character-level variant, max over the gold answers; breakdowns per domain / event type / question type; the
no-answer threshold tuned on dev; the metrics' sections of report.md.

Predictions are the recipe's output dicts: ``answer`` ("" for no answer), ``answer_start``, ``answer_end``, ``score``
and, in ``--no-answer`` runs, ``null_margin``.
"""

from __future__ import annotations

import collections
import re
import string
import unicodedata

import numpy as np

from bertkit.errors import ConfigError


def normalize_squad(text: str) -> str:
    """The official SQuAD v1.1/v2.0 normalisation: lowercase, drop punctuation and articles, squash whitespace."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


_PUNCTUATION = set(string.punctuation)


def squad_scores(prediction: str, golds: list[str]) -> tuple[float, float]:
    """``(exact match, token F1)`` of one prediction, max over the gold answers (``[""]`` = unanswerable)."""
    golds = golds or [""]
    pred_tokens = normalize_squad(prediction).split()
    em = f1 = 0.0
    for gold in golds:
        gold_tokens = normalize_squad(gold).split()
        em = max(em, float(pred_tokens == gold_tokens))
        if not pred_tokens or not gold_tokens:
            f1 = max(f1, float(pred_tokens == gold_tokens))
            continue
        common = sum((collections.Counter(pred_tokens) & collections.Counter(gold_tokens)).values())
        if common:
            precision, recall = common / len(pred_tokens), common / len(gold_tokens)
            f1 = max(f1, 2 * precision * recall / (precision + recall))
    return em, f1


def _is_cjk(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fa5"  # the range the CMRC 2018 evaluation script splits into single characters


def _is_cmrc_punct(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P") or ch in "-:_*^/\\~`+=…·"


def cmrc_segments(text: str) -> list[str]:
    """CMRC 2018 mixed segmentation: each CJK character is a token, other runs split into words; punctuation
    removed (the official script uses NLTK's word tokenizer for non-CJK runs; here words are ``\\w+`` runs)."""
    out, run = [], []
    for ch in text.lower().strip():
        if _is_cmrc_punct(ch) or _is_cjk(ch) or ch.isspace():
            if run:
                out.extend(re.findall(r"\w+|[^\w\s]", "".join(run)))
                run = []
            if _is_cjk(ch):
                out.append(ch)
        else:
            run.append(ch)
    if run:
        out.extend(re.findall(r"\w+|[^\w\s]", "".join(run)))
    return out


def _longest_common_substring(a: list[str], b: list[str]) -> int:
    best = 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0] * (len(b) + 1)
        for j, y in enumerate(b, start=1):
            if x == y:
                current[j] = previous[j - 1] + 1
                best = max(best, current[j])
        previous = current
    return best


def cmrc_scores(prediction: str, golds: list[str]) -> tuple[float, float]:
    """``(exact match, F1)`` as the CMRC 2018 evaluation: EM on punctuation-stripped lowercase text; F1 from the
    longest common substring of the mixed segmentations; max over the gold answers."""
    golds = golds or [""]
    strip = lambda s: "".join(ch for ch in s.lower().strip() if not _is_cmrc_punct(ch))  # noqa: E731
    em = float(any(strip(prediction) == strip(g) for g in golds))
    pred = cmrc_segments(prediction)
    f1 = 0.0
    for gold in golds:
        gold_segs = cmrc_segments(gold)
        if not pred or not gold_segs:
            f1 = max(f1, float(pred == gold_segs))
            continue
        common = _longest_common_substring(gold_segs, pred)
        if common:
            precision, recall = common / len(pred), common / len(gold_segs)
            f1 = max(f1, 2 * precision * recall / (precision + recall))
    return em, f1


def choose_metric(examples, metric: str = "auto") -> str:
    """``squad`` or ``cmrc``; ``auto`` picks ``cmrc`` when most context characters are CJK."""
    if metric != "auto":
        if metric not in ("squad", "cmrc"):
            raise ConfigError(f"--metric must be auto, squad or cmrc, got {metric!r}")
        return metric
    sample = "".join(e.context[:200] for e in examples[:200])
    letters = [ch for ch in sample if ch.isalpha()]
    cjk = sum(_is_cjk(ch) for ch in letters)
    return "cmrc" if letters and cjk / len(letters) > 0.3 else "squad"


def question_type(question: str) -> str:
    """First interrogative word of an English question (for the breakdown), else ``other``."""
    for word in re.findall(r"[a-z]+", question.lower()):
        if word in ("what", "how", "which", "who", "whom", "whose", "why", "when", "where", "is", "are", "does",
                    "do", "did", "was", "were", "can", "could", "would", "will", "should", "has", "have"):
            return word if word in ("what", "how", "which", "who", "why", "when", "where") else "yes/no-form"
    return "other"


def evaluate_predictions(examples, predictions, *, metric: str = "squad", n_wrong: int = 8) -> dict:
    """EM/F1 (in %) overall, per domain (or title/event type) and per question type, and a few wrong answers."""
    score = cmrc_scores if metric == "cmrc" else squad_scores
    rows = []
    for example, prediction in zip(examples, predictions):
        golds = [a.text for a in example.answers]
        em, f1 = score(prediction["answer"], golds)
        rows.append((example, prediction, em, f1))

    def summary(subset):
        n = len(subset)
        return {"exact_match": 100.0 * sum(r[2] for r in subset) / max(n, 1),
                "f1": 100.0 * sum(r[3] for r in subset) / max(n, 1), "count": n}

    metrics = summary(rows)
    metrics["metric"] = metric
    for key in ("domain", "event_type"):
        groups = collections.defaultdict(list)
        for r in rows:
            if key in r[0].meta:
                groups[r[0].meta[key]].append(r)
        if groups:
            metrics[f"per_{key}"] = {k: summary(v) for k, v in sorted(groups.items())}
    if metric == "squad":
        groups = collections.defaultdict(list)
        for r in rows:
            groups[question_type(r[0].question)].append(r)
        metrics["per_question_type"] = {k: summary(v) for k, v in sorted(groups.items())}
    if any(not e.answers for e in examples):
        metrics["has_answer"] = summary([r for r in rows if r[0].answers])
        metrics["no_answer"] = summary([r for r in rows if not r[0].answers])
    wrong = [r for r in rows if r[2] == 0]
    # a deterministic, varied sample: spread over the list rather than the first few
    step = max(1, len(wrong) // max(n_wrong, 1))
    metrics["wrong_examples"] = [
        {"id": e.id, "question": e.question, "prediction": p["answer"], "gold": [a.text for a in e.answers],
         "f1": round(100 * f1, 1)} for e, p, _, f1 in wrong[::step][:n_wrong]]
    return metrics


def tune_null_threshold(examples, predictions, *, metric: str = "squad") -> float:
    """The no-answer threshold on ``null_margin`` that maximises F1 on these (dev) predictions.

    Needs predictions that never abstain (an untuned head): each candidate threshold turns the questions whose
    margin exceeds it into "no answer"."""
    score = cmrc_scores if metric == "cmrc" else squad_scores
    span_f1 = np.array([score(p["answer"], [a.text for a in e.answers])[1] for e, p in zip(examples, predictions)])
    null_f1 = np.array([0.0 if e.answers else 1.0 for e in examples])
    margins = np.array([p["null_margin"] for p in predictions])
    order = np.argsort(-margins, kind="stable")
    # abstaining on the j questions with the largest margins: total F1 for every j at once
    totals = span_f1.sum() + np.concatenate([[0.0], np.cumsum(null_f1[order] - span_f1[order])])
    j = int(np.argmax(totals))
    # "no answer" iff margin > threshold: margins[order[j]] keeps exactly the top j abstaining (ties aside)
    return float(margins[order[j]]) if j < len(order) else float(margins[order[-1]] - 1.0)


def apply_null_threshold(predictions, threshold: float) -> list[dict]:
    """The SQuAD 2.0 rule: "no answer" (``""`` at -1) where the question's ``null_margin`` (lowest ``[CLS]`` score
    over its windows minus the best span's score) exceeds ``threshold``."""
    return [{**p, "answer": "", "answer_start": -1, "answer_end": -1} if p["null_margin"] > threshold else p
            for p in predictions]


def report_sections(metrics: dict) -> list[tuple[str, str]]:
    """Markdown for report.md: breakdown tables and wrong answers beside the gold ones."""
    from bertkit.reports import md_table

    sections = []
    for key, title in (("per_domain", "Per domain"), ("per_event_type", "Per event type"),
                       ("per_question_type", "Per question type (first interrogative word)")):
        if key in metrics:
            rows = [[name, m["count"], m["exact_match"], m["f1"]] for name, m in metrics[key].items()]
            sections.append((title, md_table(["group", "questions", "EM", "F1"], rows)))
    for key in ("has_answer", "no_answer"):
        if key in metrics:
            m = metrics[key]
            sections.append((key.replace("_", " ").capitalize(),
                             md_table(["questions", "EM", "F1"], [[m["count"], m["exact_match"], m["f1"]]])))
    wrong = metrics.get("wrong_examples") or []
    if wrong:
        cut = lambda s, n=160: s if len(s) <= n else s[:n - 1] + "…"  # noqa: E731
        rows = [[w["id"][:12], cut(w["question"], 80), cut(w["prediction"]) or "(no answer)",
                 " / ".join(cut(g) for g in w["gold"]) or "(no answer)", w["f1"]] for w in wrong]
        sections.append(("Wrong answers (exact match 0) beside the gold ones",
                         md_table(["id", "question", "predicted", "gold", "F1"], rows, align="llllr")))
    return sections
