"""recipes/sentiment: readers and their errors, data scripts, end to end on a tiny random BERT, and one slow test
that fine-tunes the real default encoder on a slice of SST-2."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from bertkit import datasets
from bertkit.errors import DataError
from bertkit.recipe import predict_main, train_main
from data_scripts import convert_sst2
from recipes.sentiment import task

RECIPE = Path(task.__file__).parent
SST2 = datasets.path("sst2")


class Options:
    """The column options of read_examples (what train.py's flags give)."""

    def __init__(self, text_column="text", text_b_column=None, label_column="label"):
        self.text_column, self.text_b_column, self.label_column = text_column, text_b_column, label_column


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
    rows = task.read_examples(table, Options("sentence", "question", "y"))
    assert [(e.text, e.text_b, e.label, e.line) for e in rows] == [('he said "hi', "ok ?", "pos", 2)]


def test_shipped_sst2_reads_and_has_two_labels():
    test = task.read_examples(SST2 / "test.jsonl")
    assert len(test) == 872 and task.label_vocab(test, SST2 / "test.jsonl") == ["negative", "positive"]
    assert task.is_labelled(test)


def test_unlabelled_file_reads_and_mixed_labels_are_an_error(tmp_path):
    examples = task.read_examples(write_jsonl(tmp_path / "u.jsonl", [{"id": "a1", "text": "good"}, {"text": "bad"}]))
    assert not task.is_labelled(examples) and [e.id for e in examples] == ["a1", None]
    with pytest.raises(DataError, match=r"u2.jsonl:2: field 'label': a label here but not on the first line"):
        task.read_examples(write_jsonl(tmp_path / "u2.jsonl", [{"text": "good"}, {"text": "bad", "label": "neg"}]))


def test_labels_differing_only_in_case_are_an_error():
    examples = [task.Example("a", label="positive", line=1), task.Example("b", label="Positive", line=2),
                task.Example("c", label="negative", line=3)]
    with pytest.raises(DataError, match=r"train.jsonl:1: field 'label': labels 'Positive' and 'positive' differ"):
        task.label_vocab(examples, "train.jsonl")


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
    head = {"labels": task.label_vocab(train_examples, "train.jsonl"), "pair": False, "label_column": "label",
            "text_b_column": "text_b"}
    dev = write_jsonl(tmp_path / "dev.jsonl", [{"text": "c", "label": "positive"}, {"text": "d", "label": "neutral"}])
    with pytest.raises(DataError, match=r"dev.jsonl:2: field 'label': label 'neutral' never seen in training; "
                                        r"training labels are negative, positive"):
        task.check_examples(task.read_examples(dev), head, dev)


def test_training_data_with_one_label_is_an_error():
    with pytest.raises(DataError, match="only the label"):
        task.label_vocab([task.Example("a", label="x")], "train.jsonl")


# ------------------------------------------------------------------------------------------- decoding, reports
def test_decode_and_confident_mistakes():
    labels = ["negative", "positive"]
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.4, 0.6]], np.float32)
    examples = [task.Example("x", label="positive", id=7), task.Example("y", label="positive"),
                task.Example("z", label="negative")]
    predictions = task.decode(probabilities, labels, examples)
    assert [d["label"] for d in predictions] == ["negative", "positive", "positive"]
    assert predictions[0]["id"] == 7 and "id" not in predictions[1]
    mistakes = task.confident_mistakes(examples, predictions)
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
    examples = {split: task.read_examples(datasets.file("mrpc", split)) for split in ("train", "dev", "test")}
    assert {split: len(e) for split, e in examples.items()} == {"train": 3672, "dev": 408, "test": 1725}
    assert all(e.text_b for e in examples["test"])
    assert not {(e.text, e.text_b) for e in examples["dev"]} & {(e.text, e.text_b) for e in examples["train"]}


# ------------------------------------------------------------------------------ end to end on a tiny random BERT
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_bert_dir):
    """A one-epoch run on 48 SST-2 phrases with a tiny random BERT, exported; its files are what the tests check."""
    work = tmp_path_factory.mktemp("sentiment")
    files = {split: write_jsonl(work / f"{split}.jsonl", head_jsonl(SST2 / f"{split}.jsonl", n))
             for split, n in (("train", 48), ("dev", 16), ("test", 24))}
    out = work / "run"
    argv = ["--bert-dir", str(tiny_bert_dir), "--output-dir", str(out), "--epochs", "1", "--batch-size", "8",
            "--export"] + [arg for split, path in files.items() for arg in (f"--{split}-file", str(path))]
    assert train_main(RECIPE, argv) == 0
    return out


def test_train_writes_report_with_headline_and_sections(tiny_run):
    report = json.loads((tiny_run / "report.json").read_text())
    assert report["task"] == "sentiment" and report["headline"]["metric"] == "accuracy"
    assert 0.0 <= report["headline"]["value"] <= 1.0 and report["metrics"]["n"] == 24
    assert set(report["metrics"]["per_class"]) == {"negative", "positive"}
    assert sum(map(sum, report["metrics"]["confusion"])) == 24
    markdown = (tiny_run / "report.md").read_text()
    assert "## Per class" in markdown and "## Most confident mistakes" in markdown
    assert (tiny_run / "confusion.png").stat().st_size > 0 and (tiny_run / "best" / "weights.h5").is_file()
    config = json.loads((tiny_run / "run_config.json").read_text())
    assert config["head"]["labels"] == ["negative", "positive"] and config["head"]["pair"] is False
    assert config["recipe"] == {"name": "sentiment", "folder": str(RECIPE)}


def test_predict_plain_lines_and_jsonl_in_batches(tiny_run, tmp_path, monkeypatch, capsys):
    texts = [r["text"] for r in head_jsonl(SST2 / "test.jsonl", 20)]
    (tmp_path / "texts.txt").write_text("\n".join(texts[:10]) + "\n\n", encoding="utf-8")  # blank line: skipped
    assert predict_main(RECIPE, ["--run-dir", str(tiny_run), "--input", str(tmp_path / "texts.txt"),
                                 "--output", str(tmp_path / "out.jsonl"), "--batch-size", "3"]) == 0
    plain = head_jsonl(tmp_path / "out.jsonl", 100)
    assert len(plain) == 10
    for p in plain:
        assert p["label"] in ("negative", "positive") and abs(sum(p["probabilities"].values()) - 1) < 1e-4
        assert p["label"] == max(p["probabilities"], key=p["probabilities"].get)
    # The same texts as JSONL on stdin (with a gold label and an id), batched differently: same predictions.
    records = [{"id": i, "text": t, "label": "positive"} for i, t in enumerate(texts[:10])]
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("".join(json.dumps(r) + "\n" for r in records)))
    assert predict_main(RECIPE, ["--run-dir", str(tiny_run), "--batch-size", "4"]) == 0
    streamed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(s["id"], s["label"]) for s in streamed] == [(i, p["label"]) for i, p in enumerate(plain)]
    # load_run: the same predictions from Python, raw strings in
    from bertkit.recipe import load_run

    predictor = load_run(tiny_run)
    assert [p["label"] for p in predictor.predict(texts[:10], batch_size=5)] == [p["label"] for p in plain]


def test_predict_bad_input_names_line_and_field(tiny_run, tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "fine"}, {"text": ""}])
    assert predict_main(RECIPE, ["--run-dir", str(tiny_run), "--input", str(bad)]) == 2
    assert f"{bad}:2: field 'text': empty" in capsys.readouterr().err


def test_export_reload_in_fresh_process_gives_same_labels(tiny_run, tmp_path):
    texts = [r["text"] for r in head_jsonl(SST2 / "test.jsonl", 24)]
    (tmp_path / "texts.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    assert predict_main(RECIPE, ["--run-dir", str(tiny_run), "--input", str(tmp_path / "texts.txt"),
                                 "--output", str(tmp_path / "keras.jsonl")]) == 0
    keras_predictions = head_jsonl(tmp_path / "keras.jsonl", 100)
    from bertkit.testing import serve_signatures_in_fresh_process  # TensorFlow and tensorflow-text, never bertkit

    calls = serve_signatures_in_fresh_process(tiny_run / "export", {"serving_default": texts, "labels": {}})
    served = {**calls["serving_default"], "labels": calls["labels"]["labels"]}
    assert served["labels"] == ["negative", "positive"]
    assert served["label"] == [p["label"] for p in keras_predictions]
    expected = np.array([[p["probabilities"][label] for label in served["labels"]] for p in keras_predictions])
    np.testing.assert_allclose(served["probabilities"], expected, atol=1e-5)


def test_text_pairs_train_and_predict(tiny_bert_dir, tmp_path):
    mrpc = datasets.path("mrpc")
    files = {split: write_jsonl(tmp_path / f"{split}.jsonl", head_jsonl(mrpc / f"{split}.jsonl", 16))
             for split in ("train", "dev", "test")}
    out = tmp_path / "run"
    assert train_main(RECIPE, ["--bert-dir", str(tiny_bert_dir), "--output-dir", str(out), "--epochs", "1",
                               "--batch-size", "8", "--max-len", "48", "--select-metric", "macro_f1"]
                      + [arg for split, path in files.items() for arg in (f"--{split}-file", str(path))]) == 0
    assert json.loads((out / "run_config.json").read_text())["head"]["pair"] is True
    report = json.loads((out / "report.json").read_text())
    assert report["train"]["best_dev"]["metric"] == "macro_f1"  # --select-metric picked the epoch
    assert report["headline"]["metric"] == "accuracy"  # the headline of the report stays the recipe's
    pairs = head_jsonl(files["test"], 3)
    (tmp_path / "pairs.txt").write_text("".join(f"{p['text']}\t{p['text_b']}\n" for p in pairs), encoding="utf-8")
    assert predict_main(RECIPE, ["--run-dir", str(out), "--input", str(tmp_path / "pairs.txt"),
                                 "--output", str(tmp_path / "pred.jsonl")]) == 0
    predicted = head_jsonl(tmp_path / "pred.jsonl", 10)
    assert len(predicted) == 3
    assert all(p["label"] in ("equivalent", "not_equivalent") for p in predicted)


@pytest.mark.parametrize("best_epoch", [2, 1])
def test_a_run_reporting_on_dev_reuses_the_restored_epochs_evaluation(tiny_bert_dir, tmp_path,
                                                                     counted_dev_predictions, best_epoch):
    """No test file: the report is on dev. When the restored weights are those of the latest dev evaluation (the
    best epoch is the last), its predictions are the report's and dev is not predicted again; when an earlier epoch
    is restored, it is (its weights give other outputs)."""
    files = {split: write_jsonl(tmp_path / f"{split}.jsonl", head_jsonl(SST2 / f"{split}.jsonl", n))
             for split, n in (("train", 16), ("dev", 8))}
    calls = counted_dev_predictions(RECIPE, best_epoch)
    out = tmp_path / "run"
    assert train_main(RECIPE, ["--bert-dir", str(tiny_bert_dir), "--output-dir", str(out), "--epochs", "2",
                               "--batch-size", "8", "--train-file", str(files["train"]),
                               "--dev-file", str(files["dev"])]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["train"]["best_epoch"] == best_epoch
    if best_epoch == 2:  # two evaluations, the second one reported: 0.9 from the score it got then
        assert calls == [8, 8]
        assert report["headline"]["value"] == pytest.approx(0.9)
    else:  # epoch 1's weights restored: dev predicted again for the report
        assert calls == [8, 8, 8]
        assert report["headline"]["value"] == pytest.approx(0.5)


def test_train_rejects_unseen_dev_label_before_training(tiny_bert_dir, tmp_path, capsys):
    train_file = write_jsonl(tmp_path / "train.jsonl", [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}])
    dev_file = write_jsonl(tmp_path / "dev.jsonl", [{"text": "so so", "label": "neutral"}])
    code = train_main(RECIPE, ["--bert-dir", str(tiny_bert_dir), "--output-dir", str(tmp_path / "run"),
                       "--train-file", str(train_file), "--dev-file", str(dev_file), "--test-file", str(train_file)])
    assert code == 2
    assert f"{dev_file}:1: field 'label': label 'neutral' never seen in training" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing was started


def test_an_unknown_select_metric_is_a_clear_error(tiny_bert_dir, tmp_path, capsys):
    files = {split: write_jsonl(tmp_path / f"{split}.jsonl", head_jsonl(SST2 / f"{split}.jsonl", 8))
             for split in ("train", "dev", "test")}
    code = train_main(RECIPE, ["--bert-dir", str(tiny_bert_dir), "--output-dir", str(tmp_path / "run"), "--epochs",
                               "1", "--select-metric", "auc"]
                      + [arg for split, path in files.items() for arg in (f"--{split}-file", str(path))])
    assert code == 2
    err = capsys.readouterr().err
    assert "no number 'auc'" in err and "--select-metric" in err and "macro_f1" in err and "Traceback" not in err


def test_unlabelled_test_file_gives_predictions_with_ids(tiny_bert_dir, tmp_path):
    """Competition flow: a test file without labels -> OUTPUT_DIR/predictions.jsonl (one line per input, its id)."""
    files = {split: write_jsonl(tmp_path / f"{split}.jsonl", head_jsonl(SST2 / f"{split}.jsonl", 16))
             for split in ("train", "dev")}
    test = write_jsonl(tmp_path / "test.jsonl", [{"id": f"t{i}", "text": r["text"]}
                                                 for i, r in enumerate(head_jsonl(SST2 / "test.jsonl", 10))])
    out = tmp_path / "run"
    assert train_main(RECIPE, ["--bert-dir", str(tiny_bert_dir), "--output-dir", str(out), "--epochs", "1",
                               "--batch-size", "8", "--train-file", str(files["train"]), "--dev-file",
                               str(files["dev"]), "--test-file", str(test)]) == 0
    predictions = head_jsonl(out / "predictions.jsonl", 100)
    assert [p["id"] for p in predictions] == [f"t{i}" for i in range(10)]
    assert all(p["label"] in ("negative", "positive") for p in predictions)
    report = json.loads((out / "report.json").read_text())
    assert report["split"] == "dev" and report["metrics"]["predictions"]["inputs"] == 10


def test_every_training_example_is_seen_once_per_epoch(tmp_path):
    """The recipe's training data (grouped by length, dynamically padded) covers each example exactly once per epoch."""
    from bertkit.tokenization import Tokenizer
    from bertkit.testing import write_random_checkpoint

    bert = write_random_checkpoint(tmp_path / "bert")
    examples = task.read_examples(SST2 / "train.jsonl")[:203]
    head = {"labels": ["negative", "positive"], "max_len": 64}
    features = task.encode(examples, Tokenizer.from_bert_dir(bert), head)
    for i, f in enumerate(features):
        f["label"] = np.int32(i)  # the example's index rides along as its target
    data = task.training_data(features, head, batch_size=16, seed=3)
    seen = [int(i) for _, ids in data.dataset.repeat().take(2 * data.steps_per_epoch) for i in ids.numpy()]
    assert sorted(seen[:203]) == sorted(seen[203:]) == list(range(203))


def test_models_built_on_one_encoder_share_its_weights(tiny_bert_dir):
    """``build_model(..., encoder=)`` uses that very encoder (what the multi-task trainer relies on)."""
    import tensorflow as tf

    from bertkit.testing import check_shared_encoder

    head = {"labels": ["negative", "positive"], "pooling": "cls", "dropout": 0.1}
    check_shared_encoder(task.build_model, tiny_bert_dir, head,
                         {"token_ids": tf.constant([[3, 40, 41, 4]]), "segment_ids": tf.zeros((1, 4), tf.int32)})


# ------------------------------------------------------------------------------------ slow: the real encoder
@pytest.mark.slow
def test_real_encoder_learns_sst2_from_a_few_hundred_sentences(default_bert_dir, tmp_path):
    """One epoch on 1,000 SST-2 training phrases (seeded sample), scored on 300 held-back GLUE-dev sentences it never
    saw. Chance is 0.5 (the classes are balanced); measured figures are in the README."""
    dev = write_jsonl(tmp_path / "dev.jsonl", head_jsonl(SST2 / "dev.jsonl", 100))
    test = write_jsonl(tmp_path / "test.jsonl", head_jsonl(SST2 / "test.jsonl", 300))
    out = tmp_path / "run"
    assert train_main(RECIPE, ["--bert-dir", str(default_bert_dir), "--output-dir", str(out), "--train-file",
                               str(SST2 / "train.jsonl"), "--max-train-examples", "1000", "--dev-file", str(dev),
                               "--test-file", str(test), "--epochs", "1", "--batch-size", "16"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["metrics"]["n"] == 300
    assert report["headline"]["value"] >= 0.70, report["headline"]
