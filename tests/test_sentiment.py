"""recipes/sentiment: readers and their errors, data scripts, end to end on a tiny random BERT, and one slow test
that fine-tunes the real default encoder on a slice of SST-2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bertkit.errors import DataError
from data_scripts import convert_mrpc, convert_sst2
from recipes.sentiment import predict, task, train

REPO = Path(__file__).resolve().parents[1]
SST2 = REPO / "data" / "sst2"


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records), encoding="utf-8")
    return path


def head_jsonl(path: Path, n: int, skip: int = 0) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for _, line in zip(range(skip + n), f)][skip:]


# ------------------------------------------------------------------------------------------------ reading data
def test_read_single_texts_and_pairs(tmp_path):
    singles = task.read_examples(write_jsonl(tmp_path / "a.jsonl", [{"text": "good", "label": 1},
                                                                    {"text": "bad", "label": "0"}]))
    assert [(e.text, e.text_b, e.label, e.line) for e in singles] == [("good", None, "1", 1), ("bad", None, "0", 2)]
    pairs = task.read_examples(write_jsonl(tmp_path / "b.jsonl", [{"text": "q1", "text_b": "q2", "label": "same"}]))
    assert (pairs[0].text, pairs[0].text_b) == ("q1", "q2")
    table = tmp_path / "c.tsv"
    table.write_text('sentence\tquestion\ty\nhe said "hi\tok ?\tpos\n', encoding="utf-8")
    rows = task.read_examples(table, text_column="sentence", text_b_column="question", label_column="y")
    assert [(e.text, e.text_b, e.label, e.line) for e in rows] == [('he said "hi', "ok ?", "pos", 2)]


def test_shipped_sst2_reads_and_has_two_labels():
    test = task.read_examples(SST2 / "test.jsonl")
    assert len(test) == 872 and task.label_vocab(test, SST2 / "test.jsonl") == ["negative", "positive"]


@pytest.mark.parametrize("line, field, message", [
    ({"label": "positive"}, "text", "missing"),
    ({"text": "fine"}, "label", "missing"),
    ({"text": "   ", "label": "positive"}, "text", "empty"),
    ({"text": 3, "label": "positive"}, "text", "expected a string"),
    ('{"text": "fine", "label": ', None, "malformed JSON"),
])
def test_bad_jsonl_line_names_file_line_and_field(tmp_path, line, field, message):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"text": "ok", "label": "positive"}, line])
    with pytest.raises(DataError) as error:
        task.read_examples(path)
    assert (error.value.path, error.value.line, error.value.field) == (str(path), 2, field)
    assert message in str(error.value) and str(error.value).startswith(f"{path}:2: ")


def test_pair_file_with_a_single_text_line_is_an_error(tmp_path):
    path = write_jsonl(tmp_path / "pairs.jsonl", [{"text": "a", "text_b": "b", "label": "x"}, {"text": "c", "label": "y"}])
    with pytest.raises(DataError, match=r":2: field 'text_b': missing"):
        task.read_examples(path)


def test_csv_without_the_named_column(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("sentence,label\nnice,1\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"data.csv:1: field 'text': no such column; columns are 'sentence', 'label'"):
        task.read_examples(path)


def test_unseen_label_in_dev_is_an_error(tmp_path):
    train_examples = [task.Example("a", label="negative", line=1), task.Example("b", label="positive", line=2)]
    labels = task.label_vocab(train_examples, "train.jsonl")
    dev = write_jsonl(tmp_path / "dev.jsonl", [{"text": "c", "label": "positive"}, {"text": "d", "label": "neutral"}])
    with pytest.raises(DataError, match=r"dev.jsonl:2: field 'label': label 'neutral' never seen in training; "
                                        r"training labels are negative, positive"):
        task.check_labels(task.read_examples(dev), labels, dev)


def test_training_data_with_one_label_is_an_error():
    with pytest.raises(DataError, match="only the label"):
        task.label_vocab([task.Example("a", label="x")], "train.jsonl")


# ------------------------------------------------------------------------------------------- decoding, reports
def test_decode_and_confident_mistakes():
    labels = ["negative", "positive"]
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]], np.float32)
    assert [d["label"] for d in task.decode(probabilities, labels)] == ["negative", "positive", "positive"]
    examples = [task.Example("x", label="positive"), task.Example("y", label="positive"),
                task.Example("z", label="negative")]
    mistakes = task.confident_mistakes(examples, probabilities, labels)
    assert [(round(c, 2), g, p, t) for c, g, p, t in mistakes] == [(0.9, "positive", "negative", "x"),
                                                                   (0.6, "negative", "positive", "z")]


# -------------------------------------------------------------------------------------------------- data scripts
def test_convert_sst2_and_its_bad_row(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("train.tsv", "dev.tsv", "test.tsv"):
        (src / name).write_text("sentence\tlabel\na `` fine '' film \t1\ndull \t0\n", encoding="utf-8")
    assert convert_sst2.main(["--src", str(src), "--out", str(tmp_path / "out")]) == 0
    assert head_jsonl(tmp_path / "out" / "test.jsonl", 2) == [{"text": "a `` fine '' film", "label": "positive"},
                                                               {"text": "dull", "label": "negative"}]
    (src / "dev.tsv").write_text("sentence\tlabel\nok\t1\nmeh\t2\n", encoding="utf-8")
    assert convert_sst2.main(["--src", str(src), "--out", str(tmp_path / "out")]) == 2
    assert f"{src / 'dev.tsv'}:3: field 'label': expected 0 or 1" in capsys.readouterr().err


def test_shipped_mrpc_is_pairs_with_the_documented_split():
    examples = {split: task.read_examples(REPO / "data" / "mrpc" / f"{split}.jsonl") for split in ("train", "dev", "test")}
    assert {split: len(e) for split, e in examples.items()} == {"train": 3672, "dev": 408, "test": 1725}
    assert all(e.text_b for e in examples["test"])
    assert not {(e.text, e.text_b) for e in examples["dev"]} & {(e.text, e.text_b) for e in examples["train"]}
