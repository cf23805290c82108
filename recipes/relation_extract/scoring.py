"""Scoring extracted triples (exact match of subject string, predicate and object string), the dev threshold sweep,
what a split's data notes say, and the task's sections of report.md."""

from __future__ import annotations

from .data import DataNotes, Example, check_predicates


def score_triples(gold: list[set], pred: list[set], predicates: list[str] | None = None) -> dict:
    """Exact-match triple scores (sets of (subject, predicate, object) strings per sentence).

    ``triple_*`` micro over all sentences; ``per_predicate`` by predicate; ``subject_*`` on the set of subject
    strings and ``pair_*`` on (subject, object) pairs, as diagnostics of which stage loses triples.
    """
    from bertkit.metrics import set_prf

    metrics = {}
    for name, project in (("triple", lambda t: t), ("subject", lambda t: t[0]), ("pair", lambda t: (t[0], t[2]))):
        scores = set_prf([{project(t) for t in g} for g in gold], [{project(t) for t in p} for p in pred])
        metrics.update({f"{name}_{k}": v for k, v in scores.items()})
    names = sorted(set(predicates or []) | {t[1] for s in gold + pred for t in s})
    metrics["per_predicate"] = {
        name: {**set_prf([{t for t in g if t[1] == name} for g in gold],
                         [{t for t in p if t[1] == name} for p in pred]),
               "support": sum(1 for g in gold for t in g if t[1] == name)}
        for name in names}
    return metrics


def threshold_sweep(gold: list[set], sweeps: list[dict]) -> list[dict]:
    """Triple P/R/F1 at every (subject threshold, object threshold) pair; ``sweeps[i]`` maps a pair to sentence
    i's predicted triple keys at it."""
    from bertkit.metrics import set_prf

    table = []
    for st, ot in sorted(sweeps[0]):
        m = set_prf(gold, [by_pair[(st, ot)] for by_pair in sweeps])  # score_triples' triple_* (no diagnostics)
        table.append({"subject_threshold": st, "object_threshold": ot, "triple_f1": m["f1"],
                      "triple_precision": m["precision"], "triple_recall": m["recall"]})
    return table


def best_thresholds(sweep: list[dict]) -> tuple[float, float]:
    """The pair with the best triple F1 (ties: the pair closest to 0.5, 0.5)."""
    best = max(sweep, key=lambda row: (row["triple_f1"], -abs(row["subject_threshold"] - 0.5)
                                       - abs(row["object_threshold"] - 0.5)))
    return best["subject_threshold"], best["object_threshold"]


def data_notes(examples: list[Example], predictions, predicates: list[str]) -> DataNotes:
    """The notes of a labelled split: sentences, triples, unknown predicates, and (from ``predict``'s alignment of
    each sentence's gold triples) mentions without offsets, cut off by max_len or not on token boundaries."""
    notes = DataNotes(examples[0].path, sentences=len(examples), triples=sum(len(e.triples) for e in examples))
    check_predicates(examples, predicates, notes)
    for prediction in predictions:
        if getattr(prediction, "notes", None) is not None:
            notes.add_counts(prediction.notes)
    return notes


def error_examples(examples: list[Example], pred: list[set], limit: int = 5) -> list[dict]:
    """The first ``limit`` sentences with missing or spurious triples, for the report."""
    out = []
    for example, p in zip(examples, pred):
        gold = {t.key for t in example.triples}
        if gold != p:
            out.append({"text": example.text, "line": example.line, "missing": sorted(gold - p),
                        "spurious": sorted(p - gold)})
            if len(out) >= limit:
                break
    return out


def report_markdown(metrics: dict, head: dict, notes: DataNotes, errors: list[dict], *,
                    threshold_source: str) -> list[tuple[str, str]]:
    """Markdown sections of report.md: scores by stage, per predicate, the dev threshold sweep, data notes and
    the missing / spurious triples of a few sentences."""
    from bertkit.reports import md_table, per_class_table

    m = metrics
    stages = md_table(["score", "precision", "recall", "f1", "tp", "fp", "fn"], [
        [name] + [m[f"{key}_{c}"] for c in ("precision", "recall", "f1", "tp", "fp", "fn")]
        for name, key in (("triple (s, p, o), exact", "triple"), ("(subject, object) pair", "pair"),
                          ("subject only", "subject"))])
    sections = [("Scores by stage", stages),
                ("Per predicate", per_class_table(m["per_predicate"], name="predicate"))]
    thresholds = head["thresholds"]
    used = f"Thresholds used: subject {thresholds['subject']}, object {thresholds['object']} ({threshold_source})."
    dev_sweep = head.get("dev_sweep")
    if dev_sweep:
        sweep_grid = sorted({row["object_threshold"] for row in dev_sweep})
        by_pair = {(row["subject_threshold"], row["object_threshold"]): row["triple_f1"] for row in dev_sweep}
        sweep = md_table(["subject threshold (rows) / object threshold (columns)"] + [str(t) for t in sweep_grid],
                         [[str(st)] + [by_pair[(st, ot)] for ot in sweep_grid]
                          for st in sorted({row["subject_threshold"] for row in dev_sweep})])
        sections.append(("Threshold sweep (dev triple F1)", f"{used}\n\n{sweep}"))
    else:
        sections.append(("Thresholds", used))
    data = f"- {notes.summary()}" + "".join(f"\n  - {w}" for w in notes.warnings)
    examples = []
    for e in errors:
        examples.append(f"- line {e['line']}: {e['text']}\n"
                        + "".join(f"  - missing: {t}\n" for t in e["missing"])
                        + "".join(f"  - spurious: {t}\n" for t in e["spurious"]))
    return sections + [
        ("Data", "Triples are scored by exact match of the subject string, predicate and object string (entity "
                 "types are not predicted). Entities without character offsets are labelled at every occurrence "
                 "of their string.\n\n" + data),
        ("Missing and spurious triples (first sentences with errors)", "\n".join(examples) or "none"),
    ]
