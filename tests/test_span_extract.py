"""recipes/span_extract: readers, windows, decoding, metrics (fast), end to end on a tiny BERT, and one slow test
that fine-tunes the real default encoder on a SubjQA slice."""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from bertkit import datasets
from bertkit.errors import ConfigError, DataError
from bertkit.recipe import load_run, predict_main, train_main
from bertkit.testing import default_vocab_tokens
from bertkit.tokenization import Tokenizer
from recipes.span_extract import data, scoring, task

RECIPE = Path(task.__file__).parent
SUBJQA = datasets.path("subjqa")


def options(**overrides) -> argparse.Namespace:
    """The reading options of read_examples (what train.py's flags give)."""
    values = {"fix_answers": False, "no_answer": False, "max_eval_examples": None, "train_file": None, "seed": 42}
    return argparse.Namespace(**{**values, **overrides})


def head(**overrides) -> dict:
    """A head config as build_head writes it (windowing and decoding settings)."""
    values = {"max_len": 64, "doc_stride": 32, "max_query_len": 64, "max_answer_len": 30, "top_k": 20,
              "no_answer": False, "null_threshold": None, "metric": "squad", "dropout": None}
    return {**values, **overrides}


@pytest.fixture(scope="module")
def tokenizer():
    tokens = default_vocab_tokens()
    return Tokenizer({t: i for i, t in enumerate(tokens)}, lowercase=True)


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def read_jsonl(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


def prediction(answer, start, end, score=1.0, null_margin=None) -> dict:
    p = {"answer": answer, "answer_start": start, "answer_end": end, "score": score}
    return p if null_margin is None else {**p, "null_margin": null_margin}


def oracle_logits(features, examples, *, noise=0.0, seed=0):
    """Start/end logits that peak on the gold answer's tokens wherever the window contains them."""
    rng = np.random.default_rng(seed)
    starts, ends, masks = [], [], []
    width = max(len(f["token_ids"]) for f in features)
    for f in features:
        answer = examples[f["example_index"]].answers[0]
        s = np.full(width, -5.0) + noise * rng.standard_normal(width)
        e = np.full(width, -5.0) + noise * rng.standard_normal(width)
        offsets = f["offsets"]
        for i, (a, b) in enumerate(offsets):
            if a < 0:
                continue
            if a <= answer.start < b:
                s[i] = 5.0
            if a < answer.end <= b:
                e[i] = 5.0
        mask = np.zeros(width, np.int32)
        mask[:len(f["passage_mask"])] = f["passage_mask"]
        starts.append(s), ends.append(e), masks.append(mask)
    return np.array(starts), np.array(ends), np.array(masks)


# ------------------------------------------------------------------------------------------------------- reading
def test_read_jsonl_and_squad_json(tmp_path):
    jsonl = write_jsonl(tmp_path / "qa.jsonl", [
        {"id": "a", "question": "who?", "context": "the cat sat", "answers": [{"text": "cat", "start": 4}]}])
    [example] = task.read_examples(jsonl)
    assert (example.id, example.answers[0].text, example.answers[0].start) == ("a", "cat", 4)
    squad = tmp_path / "qa.json"
    squad.write_text(json.dumps({"data": [{"title": "t", "paragraphs": [{"context": "one two three", "qas": [
        {"id": "q1", "question": "which?", "answers": [{"text": "two", "answer_start": 4},
                                                       {"text": "two three", "answer_start": 4}]}]}]}]}))
    [example] = task.read_examples(squad)
    assert [a.text for a in example.answers] == ["two", "two three"] and example.meta["title"] == "t"
    assert task.is_labelled([example])


def test_event_subject_form_and_shipped_examples(tmp_path):
    path = write_jsonl(tmp_path / "es.jsonl", [
        {"id": "e1", "event_type": "rating downgrade", "text": "Fitch cut Acme Corp.", "subject": "Acme Corp"}])
    [example] = task.read_examples(path)
    assert example.question == "rating downgrade" and example.answers[0].start == 10
    for split in ("train", "dev"):
        examples = task.read_examples(datasets.file("event_subject", split))
        assert all(e.context[e.answers[0].start:e.answers[0].end] == e.answers[0].text for e in examples)


def test_misaligned_answer_is_an_error_naming_file_line_id_field(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", [
        {"id": "ok", "question": "q", "context": "abc def", "answers": [{"text": "abc", "start": 0}]},
        {"id": "bad", "question": "q", "context": "the red fox", "answers": [{"text": "red", "start": 3}]}])
    with pytest.raises(DataError) as info:
        task.read_examples(path)
    message = str(info.value)
    assert f"{path}:2:" in message and "answers[0].start" in message and "bad" in message and "[4]" in message
    warnings = []
    examples = task.read_examples(path, options(fix_answers=True), warn=warnings.append)
    assert examples[1].answers[0].start == 4 and len(warnings) == 1 and "bad" in warnings[0]


def test_answer_text_nowhere_is_kept_for_scoring_only_under_fix(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", [{"id": "x", "question": "q", "context": "alpha beta",
                                                "answers": [{"text": "beta", "start": 6},
                                                            {"text": "gamma", "start": 0}]}])
    with pytest.raises(DataError, match="gamma"):
        task.read_examples(path)
    [example] = task.read_examples(path, options(fix_answers=True), warn=lambda m: None)
    assert [(a.text, a.start) for a in example.answers] == [("beta", 6), ("gamma", None)]


@pytest.mark.parametrize("record,field", [
    ({"id": "e", "question": "  ", "context": "abc", "answers": [{"text": "abc", "start": 0}]}, "question"),
    ({"id": "e", "question": "q", "context": "", "answers": []}, "context"),
    ({"id": "e", "context": "abc", "answers": [{"text": "abc", "start": 0}]}, "question"),
    ({"id": "e", "question": "q", "context": "abc", "answers": []}, "answers"),
    ({"id": "e", "question": "q", "context": "abc", "answers": [{"text": "abc", "start": -1}]}, "answers[0].start"),
])
def test_bad_records(tmp_path, record, field):
    path = write_jsonl(tmp_path / "qa.jsonl", [record])
    with pytest.raises(DataError) as info:
        task.read_examples(path)
    assert info.value.field == field and info.value.line == 1 and "id e" in str(info.value)


def test_unanswerable_needs_the_flag(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", [{"id": "u", "question": "q", "context": "abc", "answers": []}])
    stats = task.ReadStats()
    [example] = task.read_examples(path, options(no_answer=True), stats=stats)
    assert example.answers == [] and stats.unanswerable == 1 and task.is_labelled([example])
    # prediction inputs may carry an empty gold list whatever the run (gold answers are ignored there)
    [example] = task.to_examples([(1, {"question": "q", "context": "abc", "answers": []})], "<records>", options())
    assert example.answers == []


def test_unlabelled_questions_read_and_mixed_files_are_an_error(tmp_path):
    path = write_jsonl(tmp_path / "u.jsonl", [{"id": "a1", "question": "q", "context": "abc"},
                                              {"event_type": "e", "text": "def"}])
    examples = task.read_examples(path)
    assert not task.is_labelled(examples) and [e.answers for e in examples] == [None, None]
    assert [e.record_id for e in examples] == ["a1", None] and [e.id for e in examples] == ["a1", "1"]
    mixed = write_jsonl(tmp_path / "m.jsonl", [{"question": "q", "context": "abc"},
                                               {"question": "q", "context": "abc", "answers": []}])
    with pytest.raises(DataError, match=r"m.jsonl:2: field 'answers': id 1: gold answers here but not on the first"):
        task.read_examples(mixed)
    mixed = write_jsonl(tmp_path / "m2.jsonl", [{"event_type": "e", "text": "abc", "subject": "abc"},
                                                {"event_type": "e", "text": "abc"}])
    with pytest.raises(DataError, match=r"m2.jsonl:2: field 'subject': id 1: missing \(the first question has gold"):
        task.read_examples(mixed)


def test_max_eval_examples_samples_dev_and_test_but_not_train(tmp_path):
    records = [{"id": f"q{i}", "question": "q", "context": "abc", "answers": [{"text": "abc", "start": 0}]}
               for i in range(10)]
    train_file, dev_file = write_jsonl(tmp_path / "train.jsonl", records), write_jsonl(tmp_path / "dev.jsonl", records)
    args = options(max_eval_examples=4, train_file=str(train_file))
    assert len(task.read_examples(train_file, args)) == 10
    sampled = task.read_examples(dev_file, args)
    assert len(sampled) == 4 and [e.id for e in sampled] == [e.id for e in task.read_examples(dev_file, args)]


def test_shipped_subjqa_offsets():
    examples = task.read_examples(SUBJQA / "dev.jsonl")
    assert len(examples) == 659 and {e.meta["domain"] for e in examples} >= {"books", "grocery", "tripadvisor"}
    assert all("ANSWERNOTFOUND" not in e.context for e in examples)


# ------------------------------------------------------------------------------------------------------ features
def test_windows_and_merge_recover_an_answer_across_a_window_edge(tokenizer):
    words = [f"w{i}" for i in range(60)]  # "w12" -> "w", "##1", "##2": 3 tokens; w0..w9 -> 2 tokens
    context = " ".join(words)
    # windows of 20 passage tokens, starts 10 apart: the answer below straddles the first window's edge
    answer_text = "w5 w6 w7 w8 w9 w10"
    example = data.Example("x", "what", context, [data.Answer(answer_text, context.index(answer_text))])
    windows = head(max_len=3 + 1 + 20, doc_stride=10)
    features = task.make_features([example], tokenizer, windows)
    assert len(features) > 3
    first = features[0]["offsets"]
    covered = [(a, b) for a, b in first if a >= 0]
    answer = example.answers[0]
    assert covered[0][0] <= answer.start < covered[-1][1] < answer.end, "the answer must cross the first edge"
    starts, ends, masks = oracle_logits(features, [example])
    s, e, scores = task.best_spans(starts, ends, masks, max_answer_len=30, top_k=5)
    [predicted] = task.merge_windows([example], features, s, e, scores, np.zeros(len(features)))
    assert (predicted["answer"], predicted["answer_start"], predicted["answer_end"]) == (answer_text, answer.start,
                                                                                         answer.end)
    # training targets exist only for windows holding the whole answer, and point back to its exact text
    train = task.make_features([example], tokenizer, windows, training=True)
    assert 0 < len(train) < len(features)
    for f in train:
        assert context[f["offsets"][f["start"]][0]:f["offsets"][f["end"]][1]] == answer_text


def test_answer_in_no_window_is_counted_and_warned(tokenizer):
    context = " ".join(f"w{i}" for i in range(40))
    example = data.Example("long", "q", context, [data.Answer(context[3:90], 3)], where="f.jsonl:7")
    warnings, stats = [], task.FeatureStats()
    features = task.make_features([example], tokenizer, head(max_len=16, doc_stride=6), training=True, stats=stats,
                                  warn=warnings.append)
    assert features == [] and stats.no_answer_in_any_window == 1 and stats.skipped_ids == ["long"]
    assert "f.jsonl:7" in warnings[0] and "id long" in warnings[0] and "'answers'" in warnings[0]
    with_null = task.make_features([example], tokenizer, head(max_len=16, doc_stride=6, no_answer=True),
                                   training=True, warn=lambda m: None)
    assert with_null and all(f["start"] == f["end"] == 0 for f in with_null)


def test_feature_layout(tokenizer):
    example = data.Example("x", "who is it", "the cat sat on the mat", [data.Answer("cat", 4)])
    [f] = task.make_features([example], tokenizer, head(), training=True)
    tokens = tokenizer.convert_ids_to_tokens(f["token_ids"])
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]" and tokens.count("[SEP]") == 2
    assert f["passage_mask"].tolist() == [int(s == 1 and t != "[SEP]") for s, t in zip(f["segment_ids"], tokens)]
    assert example.context[f["offsets"][f["start"]][0]:f["offsets"][f["end"]][1]] == "cat"
    assert (f["offsets"][:f["segment_ids"].tolist().index(1)] == -1).all()


def test_training_target_skips_whitespace_tokens_in_per_char_mode():
    per_char = Tokenizer({t: i for i, t in enumerate(default_vocab_tokens())}, lowercase=True, per_char=True)
    example = data.Example("x", "q", "the red car", [data.Answer(" red ", 3)])
    [f] = task.make_features([example], per_char, head(), training=True)
    assert example.context[f["offsets"][f["start"]][0]:f["offsets"][f["end"]][1]] == "red"


def test_encode_without_any_answer_window_is_an_error(tokenizer):
    context = " ".join(f"w{i}" for i in range(40))
    example = data.Example("long", "q", context, [data.Answer(context[3:90], 3)], where="f.jsonl:7")
    with pytest.raises(ConfigError, match="no training window holds an answer"):
        task.encode([example], tokenizer, head(max_len=16, doc_stride=6))


# ------------------------------------------------------------------------------------------------------ decoding
def test_best_spans_matches_brute_force():
    rng = np.random.default_rng(3)
    start, end = rng.standard_normal((50, 30)), rng.standard_normal((50, 30))
    mask = (rng.random((50, 30)) < 0.8).astype(np.int32)
    mask[:, :3] = 0
    s, e, scores = task.best_spans(start, end, mask, max_answer_len=5, top_k=30)
    for row in range(50):
        best = max(((start[row, i] + end[row, j], i, j) for i in range(30) for j in range(i, min(i + 5, 30))
                    if mask[row, i] and mask[row, j]), default=None)
        assert np.isclose(scores[row], best[0]) and (s[row], e[row]) == best[1:]
    # top-k restricts the search but keeps start <= end within the length limit
    s, e, _ = task.best_spans(start, end, mask, max_answer_len=5, top_k=4)
    valid = s >= 0
    assert np.all((e[valid] >= s[valid]) & (e[valid] - s[valid] < 5))


def test_best_spans_all_masked_row():
    s, e, scores = task.best_spans(np.zeros((1, 4)), np.zeros((1, 4)), np.zeros((1, 4)), top_k=2)
    assert s[0] == e[0] == -1 and scores[0] == -np.inf


ODD_TEXTS = [
    "Café  crème\tbrûlée, naïve façade —  déjà vu.",
    "北京是中国的首都，上海是\u3000最大的城市。Tokyo 東京",
    "tabs\tand\nnew lines\u00a0and\u2003em spaces  and zero\u200bwidth",
    "Ünïcödé ÀÉÎÕÜ 123 4.5% $6 (seven)",
]


@pytest.mark.parametrize("per_char", [False, True])
def test_every_predicted_answer_is_the_context_substring_at_its_offsets(per_char):
    tokens = default_vocab_tokens()
    tokenizer = Tokenizer({t: i for i, t in enumerate(tokens)}, lowercase=True, per_char=per_char)
    examples = [data.Example(str(i), "what is it", text, None) for i, text in enumerate(ODD_TEXTS)]
    features = task.make_features(examples, tokenizer, head(max_len=16, doc_stride=5))
    rng = np.random.default_rng(0)
    width = max(len(f["token_ids"]) for f in features)
    masks = np.array([np.pad(f["passage_mask"], (0, width - len(f["passage_mask"]))) for f in features])
    for trial in range(20):
        start, end = rng.standard_normal((2, len(features), width))
        s, e, scores = task.best_spans(start, end, masks, max_answer_len=6, top_k=8)
        predictions = task.merge_windows(examples, features, s, e, scores, np.zeros(len(features)))
        for example, p in zip(examples, predictions):
            assert 0 <= p["answer_start"] < p["answer_end"] <= len(example.context)
            assert p["answer"] == example.context[p["answer_start"]:p["answer_end"]]
            assert p["answer"] == p["answer"].strip() and p["answer"]  # spans start and end on token characters


def test_merge_windows_no_answer_rule_and_ids():
    examples = [data.Example("0", "q", "red car", [], record_id=7), data.Example("1", "q", "red car", [])]
    features = [{"example_index": 0, "offsets": np.array([[-1, -1], [0, 3], [4, 7]])},
                {"example_index": 1, "offsets": np.array([[-1, -1], [0, 3], [4, 7]])}]
    starts, ends, scores = np.array([1, 2]), np.array([1, 2]), np.array([2.0, 2.0])
    null_scores = np.array([5.0, 1.0])  # margins 3.0 and -1.0
    never = task.merge_windows(examples, features, starts, ends, scores, null_scores, no_answer=True)
    assert [(p.get("id"), p["answer"], p["null_margin"]) for p in never] == [(7, "red", 3.0), (None, "car", -1.0)]
    tuned = task.merge_windows(examples, features, starts, ends, scores, null_scores, no_answer=True,
                               null_threshold=0.0)
    assert [(p["answer"], p["answer_start"], p["answer_end"]) for p in tuned] == [("", -1, -1), ("car", 4, 7)]
    assert "null_margin" not in task.merge_windows(examples, features, starts, ends, scores, null_scores)[0]


# ------------------------------------------------------------------------------------------------------- metrics
def test_squad_metric():
    assert scoring.normalize_squad("The  Cat's, hat!") == "cats hat"
    assert scoring.squad_scores("the cat", ["A cat", "dog"]) == (1.0, 1.0)
    em, f1 = scoring.squad_scores("black cat sat", ["the cat sat down"])
    assert em == 0.0 and np.isclose(f1, 2 * (2 / 3) * (2 / 3) / (4 / 3))
    assert scoring.squad_scores("", []) == (1.0, 1.0) and scoring.squad_scores("x", []) == (0.0, 0.0)


def test_cmrc_metric():
    assert scoring.cmrc_segments("4分钟，Nexon开发!") == ["4", "分", "钟", "nexon", "开", "发"]
    assert scoring.cmrc_scores("踢爆。", ["踢爆"]) == (1.0, 1.0)
    em, f1 = scoring.cmrc_scores("北京市", ["北京"])  # lcs 2, p=2/3, r=1
    assert em == 0.0 and np.isclose(f1, 0.8)
    em, f1 = scoring.cmrc_scores("京北", ["北京"])  # longest common SUBSTRING is 1 char
    assert np.isclose(f1, 0.5)
    assert scoring.choose_metric([data.Example("1", "q", "泡泡战士是一款游戏", [])]) == "cmrc"


def test_evaluate_breakdown_and_wrong_examples():
    examples = [data.Example("1", "What is good?", "good food", [data.Answer("good food", 0)], {"domain": "a"}),
                data.Example("2", "How is it?", "bad room", [data.Answer("room", 4)], {"domain": "b"})]
    predictions = [prediction("good food", 0, 9), prediction("bad", 0, 3)]
    metrics = scoring.evaluate_predictions(examples, predictions)
    assert metrics["exact_match"] == 50.0 and metrics["per_domain"]["b"]["f1"] == 0.0
    assert metrics["per_question_type"]["what"]["exact_match"] == 100.0
    assert metrics["wrong_examples"] == [{"id": "2", "question": "How is it?", "prediction": "bad",
                                          "gold": ["room"], "f1": 0.0}]


def test_null_threshold_tuning():
    examples = [data.Example(str(i), "q", "x y", [data.Answer("x", 0)] if i < 3 else []) for i in range(6)]
    margins = [-3.0, -2.0, 1.0, 0.5, 2.0, 3.0]  # examples 0-2 are answerable (right span), 3-5 are not
    predictions = [prediction("x", 0, 1, 0.0, m) for m in margins]
    threshold = scoring.tune_null_threshold(examples, predictions)
    # abstaining on the top 2 (3.0, 2.0) or top 4 (.., 1.0, 0.5) both give 5/6 right; the fewer abstentions win
    assert 1.0 <= threshold < 2.0
    assert scoring.tune_null_threshold(examples[:3], predictions[:3]) >= 1.0  # all answerable: never abstain
    # the contract's tune step: the head gets the threshold; score on an untuned head tunes on the fly
    untuned = head(no_answer=True)
    tuned = task.tune(examples, predictions, untuned)
    assert tuned["null_threshold"] == threshold and untuned["null_threshold"] is None
    assert task.tune(examples, predictions, head()) == head()
    on_the_fly = task.score(examples, predictions, untuned)
    assert on_the_fly["null_threshold"] == threshold and np.isclose(on_the_fly["f1"], 100 * 5 / 6)
    applied = scoring.apply_null_threshold(predictions, threshold)
    assert np.isclose(task.score(examples, applied, tuned)["f1"], 100 * 5 / 6)


# --------------------------------------------------------------------------------------------- end to end (tiny)
TINY_CONTEXTS = [
    ("what color is the car?", "the car is red and the house is blue.", "red"),
    ("what color is the house?", "the car is red and the house is blue.", "blue"),
    ("who made the cake?", "the cake was made by anna in the morning.", "anna"),
    ("when was the cake made?", "the cake was made by anna in the morning.", "in the morning"),
    ("where is the dog?", "the dog is in the garden , the cat is at home.", "in the garden"),
    ("where is the cat?", "the dog is in the garden , the cat is at home.", "at home"),
]
TINY_FLAGS = ["--epochs", "1", "--max-len", "48", "--doc-stride", "8", "--batch-size", "8"]


def tiny_files(tmp_path, *, unanswerable=False):
    records = []
    for i in range(4):
        for j, (question, context, answer) in enumerate(TINY_CONTEXTS):
            records.append({"id": f"{i}-{j}", "question": question, "context": context,
                            "answers": [{"text": answer, "start": context.index(answer)}]})
    if unanswerable:
        records.append({"id": "u", "question": "who owns the car?", "context": TINY_CONTEXTS[0][1], "answers": []})
    return write_jsonl(tmp_path / "train.jsonl", records), write_jsonl(tmp_path / "dev.jsonl", records[:8])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_bert_dir):
    """One epoch on 24 tiny questions with a tiny random BERT, tested on 8 of them, exported."""
    work = tmp_path_factory.mktemp("span_extract")
    train_file, dev_file = tiny_files(work)
    run_dir = work / "run"
    assert train_main(RECIPE, ["--bert-dir", str(tiny_bert_dir), "--train-file", str(train_file), "--dev-file",
                               str(dev_file), "--test-file", str(dev_file), "--output-dir", str(run_dir),
                               "--export", *TINY_FLAGS]) == 0
    return run_dir


def tiny_inputs(tmp_path) -> Path:
    return write_jsonl(tmp_path / "in.jsonl", [{"id": f"a{i}", "question": q, "context": c, "extra": 1}
                                               for i, (q, c, _) in enumerate(TINY_CONTEXTS)])


def test_train_writes_report_and_one_run_config(tiny_run):
    report = json.loads((tiny_run / "report.json").read_text())
    assert report["headline"]["metric"] == "f1" and 0.0 <= report["headline"]["value"] <= 100.0
    assert report["metrics"]["count"] == 8 and "per_question_type" in report["metrics"]
    assert "Wrong answers" in (tiny_run / "report.md").read_text() or report["metrics"]["exact_match"] == 100.0
    config = json.loads((tiny_run / "run_config.json").read_text())
    assert config["task"] == "span_extract" and config["recipe"] == {"name": "span_extract", "folder": str(RECIPE)}
    assert config["head"]["max_len"] == 48 and config["head"]["doc_stride"] == 8
    assert config["head"]["no_answer"] is False and config["head"]["null_threshold"] is None
    assert config["head"]["metric"] == "squad" and config["tokenizer"]["per_char"] is False


def test_predict_jsonl_and_text_lines_and_load_run_agree(tiny_run, tmp_path, monkeypatch, capsys):
    inputs = tiny_inputs(tmp_path)
    out = tmp_path / "out.jsonl"
    assert predict_main(RECIPE, ["--run-dir", str(tiny_run), "--input", str(inputs), "--output", str(out),
                                 "--batch-size", "4"]) == 0
    rows = read_jsonl(out)
    assert [r["id"] for r in rows] == [f"a{i}" for i in range(len(TINY_CONTEXTS))]
    for row, (_, context, _) in zip(rows, TINY_CONTEXTS):
        assert row["answer"] == context[row["answer_start"]:row["answer_end"]] != ""
        assert set(row) == {"id", "answer", "answer_start", "answer_end", "score"}
    # plain text lines "question<TAB>context" on stdin: the same answers (no ids)
    lines = "".join(f"{q}\t{c}\n" for q, c, _ in TINY_CONTEXTS)
    monkeypatch.setattr(sys, "stdin", io.StringIO(lines))
    assert predict_main(RECIPE, ["--run-dir", str(tiny_run)]) == 0
    streamed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [{k: v for k, v in r.items() if k != "id"} for r in rows] == streamed
    # load_run: the same outputs from Python on the raw records and on raw strings
    predictor = load_run(tiny_run)
    records = [{"id": f"a{i}", "question": q, "context": c} for i, (q, c, _) in enumerate(TINY_CONTEXTS)]
    assert predictor.predict(records, batch_size=5) == rows
    assert predictor.predict([f"{q}\t{c}" for q, c, _ in TINY_CONTEXTS]) == streamed


def test_export_reload_in_fresh_process_gives_the_same_answers(tiny_run, tmp_path):
    rows = load_run(tiny_run).predict([{"question": q, "context": c} for q, c, _ in TINY_CONTEXTS])
    from bertkit.testing import serve_in_fresh_process  # TensorFlow and tensorflow-text only, never bertkit

    served = serve_in_fresh_process(tiny_run / "export", {"question": [q for q, _, _ in TINY_CONTEXTS],
                                                          "context": [c for _, c, _ in TINY_CONTEXTS]})
    served["shapes"] = [list(np.shape(served[k])) for k in ("start_logits", "end_logits", "offsets")]
    assert served["answer"] == [r["answer"] for r in rows]
    assert served["answer_start"] == [r["answer_start"] for r in rows]
    assert served["answer_end"] == [r["answer_end"] for r in rows]
    start_shape, end_shape, offsets_shape = served["shapes"]
    assert start_shape == end_shape == offsets_shape[:2] and offsets_shape[2] == 2


def test_unlabelled_test_file_gives_predictions_with_ids(tiny_bert_dir, tmp_path):
    """Competition flow: a test file without answers -> OUTPUT_DIR/predictions.jsonl (one line per input, its id)."""
    train_file, dev_file = tiny_files(tmp_path)
    test = write_jsonl(tmp_path / "test.jsonl", [{"id": f"t{i}", "question": q, "context": c}
                                                 for i, (q, c, _) in enumerate(TINY_CONTEXTS)])
    out = tmp_path / "run"
    assert train_main(RECIPE, ["--bert-dir", str(tiny_bert_dir), "--train-file", str(train_file), "--dev-file",
                               str(dev_file), "--test-file", str(test), "--output-dir", str(out), *TINY_FLAGS]) == 0
    predictions = read_jsonl(out / "predictions.jsonl")
    assert [p["id"] for p in predictions] == [f"t{i}" for i in range(len(TINY_CONTEXTS))]
    for p, (_, context, _) in zip(predictions, TINY_CONTEXTS):
        assert p["answer"] == context[p["answer_start"]:p["answer_end"]]
    report = json.loads((out / "report.json").read_text())
    assert report["split"] == "dev" and report["metrics"]["predictions"]["inputs"] == len(TINY_CONTEXTS)


def test_every_training_window_is_seen_once_per_epoch(tokenizer):
    """The recipe's training data (grouped by length, dynamically padded) covers each training window exactly once per
    epoch: the window's index rides along as its start target."""
    examples = task.read_examples(SUBJQA / "dev.jsonl")[:60]
    windows = head(max_len=96, doc_stride=32)
    features = task.make_features(examples, tokenizer, windows, training=True, warn=lambda m: None)
    n = len(features)
    assert n > 60  # long reviews: several windows per question
    for i, f in enumerate(features):
        f["start"] = np.int32(i)
    data_ = task.training_data(features, windows, batch_size=16, seed=3)
    seen = [int(i) for _, targets in data_.dataset.repeat().take(2 * data_.steps_per_epoch)
            for i in targets["start"].numpy()]
    assert sorted(seen[:n]) == sorted(seen[n:]) == list(range(n))


def test_no_answer_flag_tunes_a_threshold(tmp_path, tiny_bert_dir):
    train_file, _ = tiny_files(tmp_path, unanswerable=True)
    run_dir = tmp_path / "run"
    common = ["--bert-dir", str(tiny_bert_dir), "--train-file", str(train_file), "--dev-file", str(train_file),
              "--test-file", str(train_file), "--output-dir", str(run_dir), *TINY_FLAGS]
    assert train_main(RECIPE, common) == 2  # unanswerable questions without --no-answer: one clear error
    assert train_main(RECIPE, common + ["--no-answer"]) == 0
    config = json.loads((run_dir / "run_config.json").read_text())
    assert config["head"]["no_answer"] is True and isinstance(config["head"]["null_threshold"], float)
    metrics = json.loads((run_dir / "report.json").read_text())["metrics"]
    assert metrics["no_answer"]["count"] == 1 and metrics["has_answer"]["count"] == 24
    # a finished --no-answer run applies its tuned threshold and reports each question's null margin
    [p] = load_run(run_dir).predict([{"id": "u", "question": "who owns the car?", "context": TINY_CONTEXTS[0][1]}])
    assert isinstance(p["null_margin"], float)
    assert (p["answer"] == "") == (p["null_margin"] > config["head"]["null_threshold"])


def test_bad_input_exits_2_with_one_message(tmp_path, tiny_bert_dir, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"id": "b1", "question": "q", "context": "red car",
                                                "answers": [{"text": "car", "start": 0}]}])
    assert train_main(RECIPE, ["--bert-dir", str(tiny_bert_dir), "--train-file", str(bad), "--dev-file", str(bad),
                               "--test-file", str(bad), "--output-dir", str(tmp_path / "r"), *TINY_FLAGS]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:1: field 'answers[0].start': id b1" in err and "Traceback" not in err
    empty = write_jsonl(tmp_path / "empty.jsonl", [{"question": "q", "context": " "}])
    assert predict_main(RECIPE, ["--run-dir", str(tmp_path / "nowhere"), "--input", str(empty)]) == 2


def test_predict_bad_record_names_line_and_field(tiny_run, tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"question": "q", "context": "abc"}, {"question": "q", "context": ""}])
    assert predict_main(RECIPE, ["--run-dir", str(tiny_run), "--input", str(bad)]) == 2
    assert f"{bad}:2: field 'context': id 1: empty" in capsys.readouterr().err


def test_models_built_on_one_encoder_share_its_weights(tiny_bert_dir):
    """``build_model(..., encoder=)`` uses that very encoder (what the multi-task trainer relies on)."""
    import tensorflow as tf

    from bertkit.testing import check_shared_encoder

    check_shared_encoder(task.build_model, tiny_bert_dir, head(),
                         {"token_ids": tf.constant([[3, 40, 4, 41, 42, 4]]),
                          "segment_ids": tf.constant([[0, 0, 0, 1, 1, 1]]),
                          "passage_mask": tf.constant([[0, 0, 0, 1, 1, 0]])})


# ------------------------------------------------------------------------------------------------------ slow (real)
SLOW_MIN_F1 = 12.0  # measured ~21-26 F1 with 320-400 questions; an untrained model scores ~3


@pytest.mark.slow
def test_real_encoder_learns_subjqa_slice(tmp_path, default_bert_dir):
    """Fine-tunes all-MiniLM-L6-v2 on 320 SubjQA train questions (1 epoch, max_len 256) and evaluates on 120 dev and
    120 test questions: test F1 must beat SLOW_MIN_F1. About 1.5 minutes on 2 CPU cores."""
    run_dir = tmp_path / "run"
    rc = train_main(RECIPE, ["--bert-dir", str(default_bert_dir), "--output-dir", str(run_dir), "--epochs", "1",
                             "--max-train-examples", "320", "--max-eval-examples", "120", "--max-len", "256",
                             "--doc-stride", "128"])
    assert rc == 0
    report = json.loads((run_dir / "report.json").read_text())
    assert report["metrics"]["count"] == 120
    assert report["headline"]["value"] > SLOW_MIN_F1, report["metrics"]
