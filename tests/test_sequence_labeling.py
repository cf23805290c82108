"""recipes/sequence_labeling (NER): readers and bad input, tag schemes, windows, offsets, the CRF head learning
transitions, end to end on a tiny random BERT (train_main / predict_main / load_run / export), and one slow test
that fine-tunes the real default encoder on a slice of CoNLL-2003."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from bertkit import datasets
from bertkit.errors import DataError
from bertkit.recipe import load_run, predict_main, train_main
from recipes.sequence_labeling import task
from recipes.sequence_labeling.data import read_corpus, split_words

RECIPE = Path(task.__file__).parent
CONLL2003 = datasets.path("conll2003")


class Options:
    """The reading options of read_examples / build_head (what train.py's flags give)."""

    def __init__(self, **options):
        defaults = {"tag_scheme": "auto", "repair_tags": False, "per_char": False, "max_dev_examples": None,
                    "dev_file": None, "seed": 0, "train_file": None, "max_len": 32, "crf": True, "dropout": 0.1,
                    "crf_lr_multiplier": 200.0}
        self.__dict__.update({**defaults, **options})


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def jsonl(tmp_path, records, name="x.jsonl"):
    return write(tmp_path, name, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def read_jsonl_lines(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines()]


# ---------------------------------------------------------------------------------------------------------- readers
CONLL = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER
"""


def test_reads_conll_columns_and_docstart(tmp_path):
    corpus = read_corpus(write(tmp_path, "a.txt", CONLL))
    assert [s.tokens for s in corpus.sentences] == [["EU", "rejects", "German", "call"], ["Peter", "Blackburn"]]
    assert corpus.sentences[1].tags == ["B-PER", "I-PER"]
    assert corpus.sentences[1].lines == [8, 9]
    assert corpus.scheme == "bio"


def test_ragged_conll_line_names_file_line_and_field(tmp_path):
    path = write(tmp_path, "a.txt", CONLL.replace("call NN I-NP O", "call O"))
    with pytest.raises(DataError, match=r"a\.txt:6: field 'columns': 2 columns, expected 4"):
        read_corpus(path)


def test_jsonl_length_mismatch_and_empty_sentence(tmp_path):
    path = jsonl(tmp_path, [{"tokens": ["a", "b"], "tags": ["O", "O"]}, {"tokens": ["a", "b"], "tags": ["O"]}])
    with pytest.raises(DataError, match=r"x\.jsonl:2: field 'tags': 1 tags for 2 tokens"):
        read_corpus(path)
    path = jsonl(tmp_path, [{"tokens": [], "tags": []}])
    with pytest.raises(DataError, match=r"x\.jsonl:1: field 'tokens': empty"):
        read_corpus(path)
    path = jsonl(tmp_path, [{"tokens": ["a", " "], "tags": ["O", "O"]}])
    with pytest.raises(DataError, match=r"x\.jsonl:1: field 'tokens': token 1"):
        read_corpus(path)


def test_unknown_tag_scheme_is_an_error(tmp_path):
    path = jsonl(tmp_path, [{"tokens": ["a"], "tags": ["O"]}, {"tokens": ["a", "b"], "tags": ["B-X", "M-X"]}])
    with pytest.raises(DataError, match=r"x\.jsonl:2: field 'tags': unknown tag scheme: tag 'M-X'"):
        read_corpus(path)
    path = jsonl(tmp_path, [{"tokens": ["a"], "tags": ["PER"]}])
    with pytest.raises(DataError, match="unknown tag scheme"):
        read_corpus(path)


def test_entity_starting_with_i_is_an_error_or_repaired_by_flag(tmp_path):
    records = [{"tokens": ["a", "b", "c"], "tags": ["I-PER", "I-PER", "O"]},
               {"tokens": ["a", "b"], "tags": ["B-LOC", "I-PER"]}]
    path = jsonl(tmp_path, records)
    with pytest.raises(DataError, match=r"x\.jsonl:1: field 'tags': tag 'I-PER' at token 0 starts an entity"):
        read_corpus(path)
    corpus = read_corpus(path, repair=True)
    assert corpus.repaired == 2
    assert corpus.sentences[0].tags == ["B-PER", "I-PER", "O"]
    assert corpus.sentences[1].tags == ["B-LOC", "B-PER"]


def test_bioes_detected_and_checked(tmp_path):
    good = [{"tokens": list("abcd"), "tags": ["B-PER", "E-PER", "S-LOC", "O"]}]
    assert read_corpus(jsonl(tmp_path, good)).scheme == "bioes"
    bad = [{"tokens": list("abc"), "tags": ["S-LOC", "B-PER", "O"]}]
    with pytest.raises(DataError, match="ends an entity"):
        read_corpus(jsonl(tmp_path, bad))
    assert read_corpus(jsonl(tmp_path, bad), repair=True).sentences[0].tags == ["S-LOC", "S-PER", "O"]
    with pytest.raises(DataError, match="is not BIO"):
        read_corpus(jsonl(tmp_path, good), scheme="bio")


def test_tag_vocab_and_unseen_or_foreign_scheme_tags_in_dev(tmp_path):
    train = task.read_examples(jsonl(tmp_path, [{"tokens": list("abc"), "tags": ["B-PER", "I-PER", "B-LOC"]}]))
    head = task.build_head(train, Options(train_file="train.jsonl"), None)
    assert head["tags"] == ["O", "B-LOC", "B-PER", "I-PER"] and head["scheme"] == "bio"
    dev = jsonl(tmp_path, [{"tokens": ["a"], "tags": ["O"]}, {"tokens": ["a"], "tags": ["B-ORG"]}], "dev.jsonl")
    with pytest.raises(DataError, match=r"dev\.jsonl:2: field 'tags': tag 'B-ORG' does not occur"):
        task.check_examples(task.read_examples(dev), head, dev)
    bioes = jsonl(tmp_path, [{"tokens": ["a"], "tags": ["S-PER"]}], "bioes.jsonl")
    with pytest.raises(DataError, match=r"bioes\.jsonl:1: field 'tags': tag 'S-PER' is not BIO"):
        task.check_examples(task.read_examples(bioes), head, bioes)
    task.check_examples(task.read_examples(jsonl(tmp_path, [{"tokens": ["a"]}], "t.jsonl")), head, "t.jsonl")


def test_unlabelled_tokens_texts_and_conll_and_mixed_labels(tmp_path):
    records = [{"id": "a", "tokens": ["Peter", "Blackburn"]}, {"text": "  EU rejects\u00a0it ", "id": 7},
               {"text": "\u200b"}]
    examples = task.read_examples(jsonl(tmp_path, records), Options())
    assert not task.is_labelled(examples)
    assert [(s.id, s.tokens, s.text, s.spans) for s in examples] == [
        ("a", ["Peter", "Blackburn"], "Peter Blackburn", [(0, 5), (6, 15)]),
        (7, ["EU", "rejects", "it"], "  EU rejects\u00a0it ", [(2, 4), (5, 12), (13, 15)]),
        (None, [], "\u200b", [])]
    assert [s.tokens for s in task.to_examples([(1, {"text": "高 勇"})], "<in>", Options(per_char=True))] == [
        ["高", "勇"]]
    one_column = task.read_examples(write(tmp_path, "t.txt", "EU\nrejects\n\nPeter\n"))
    assert [(s.tokens, s.tags) for s in one_column] == [(["EU", "rejects"], None), (["Peter"], None)]
    mixed = jsonl(tmp_path, [{"tokens": ["a"]}, {"tokens": ["b"], "tags": ["O"]}], "mixed.jsonl")
    with pytest.raises(DataError, match=r"mixed\.jsonl:2: field 'tags': tags here but not on the first line"):
        task.read_examples(mixed)
    mixed = jsonl(tmp_path, [{"tokens": ["a"], "tags": ["O"]}, {"tokens": ["b"]}], "mixed.jsonl")
    with pytest.raises(DataError, match=r"mixed\.jsonl:2: field 'tags': missing"):
        task.read_examples(mixed)
    text_with_tags = jsonl(tmp_path, [{"text": "a b", "tags": ["O", "O"]}], "tt.jsonl")
    with pytest.raises(DataError, match=r"tt\.jsonl:1: field 'tokens': missing: tagged sentences need"):
        task.read_examples(text_with_tags)
    with pytest.raises(DataError, match=r"<in>:3: field 'text': empty"):
        task.to_examples([(3, {"text": " "})], "<in>", None)


def test_max_dev_examples_cuts_only_the_dev_file(tmp_path):
    path = jsonl(tmp_path, [{"tokens": [f"w{i}"], "tags": ["O"]} for i in range(10)], "dev.jsonl")
    options = Options(max_dev_examples=3, dev_file=str(path))
    assert len(task.read_examples(path, options)) == 3
    other = jsonl(tmp_path, [{"tokens": [f"w{i}"], "tags": ["O"]} for i in range(10)], "test.jsonl")
    assert len(task.read_examples(other, options)) == 10


# ------------------------------------------------------------------------------------------------ words and offsets
TRICKY = "  The U.S. ban on Jean-Pierre's café (Zürich)\tdoesn't\u00a0stop\u200b Naïve-Co.,  $5.3bn — 東京 ok!  "


def test_split_words_offsets_round_trip():
    words = split_words(TRICKY)
    assert all(TRICKY[s:e] == w for w, s, e in words)
    assert [w for w, _, _ in words][:9] == ["The", "U.S.", "ban", "on", "Jean-Pierre", "'s", "café", "(", "Zürich"]
    assert [w for w, _, _ in split_words("O'Neill doesn't 'sorry' it's")] == [
        "O'Neill", "doesn't", "'", "sorry", "'", "it", "'s"]
    # nothing but whitespace is lost between words
    covered = set(i for _, s, e in words for i in range(s, e))
    assert all(TRICKY[i].isspace() or TRICKY[i] == "\u200b" for i in range(len(TRICKY)) if i not in covered)
    chars = split_words("高 勇：男", per_char=True)
    assert chars == [("高", 0, 1), ("勇", 2, 3), ("：", 3, 4), ("男", 4, 5)]


def test_char_entities_exact_offsets():
    words = split_words(TRICKY)
    tags = ["O"] * len(words)
    tags[1] = "B-LOC"                       # U.S.
    tags[4], tags[5], tags[6] = "B-PER", "I-PER", "I-PER"     # Jean-Pierre's café
    tags[8] = "B-LOC"                                          # Zürich
    entities = task.char_entities(TRICKY, [(s, e) for _, s, e in words], tags)
    assert [(e["type"], e["text"]) for e in entities] == [("LOC", "U.S."), ("PER", "Jean-Pierre's café"),
                                                          ("LOC", "Zürich")]
    assert all(TRICKY[e["start"]:e["end"]] == e["text"] for e in entities)


# -------------------------------------------------------------------------------------------------------- metrics
def test_evaluate_tags_entity_level_and_confusion():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-ORG", "O"]]
    pred = [["B-PER", "I-PER", "O", "B-ORG"], ["O", "B-MISC"]]
    m = task.evaluate_tags(gold, pred)
    assert m["precision"] == pytest.approx(1 / 3) and m["recall"] == pytest.approx(1 / 3)
    assert m["per_type"]["PER"]["f1"] == 1.0 and m["per_type"]["LOC"]["support"] == 1
    assert m["confusion"]["LOC"] == {"ORG": 1}
    assert m["confusion"]["ORG"] == {"(missed)": 1}
    assert m["confusion"]["(spurious)"] == {"MISC": 1}
    titles = [t for t, _ in task.markdown_sections(m)]
    assert "Entity-type confusion" in titles


# ------------------------------------------------------------------------------------------------------------- CRF
def test_crf_learns_transitions_when_emissions_carry_no_information():
    """Tags alternate 0,1,0,1... after a tag chosen by the input at step 0 only: only transitions can learn it."""
    import tensorflow as tf

    from bertkit.crf import CRF
    tf.keras.utils.set_random_seed(0)
    steps, n = 6, 64
    first = np.arange(n) % 2
    tags = np.stack([(first + t) % 2 for t in range(steps)], axis=1).astype(np.int32)
    emissions_in = np.zeros((n, steps, 2), np.float32)
    emissions_in[np.arange(n), 0, first] = 1.0
    crf = CRF(2)
    crf.build(None)
    scale = tf.Variable(1.0)
    initial = crf.transitions.numpy().copy()
    optimizer = tf.keras.optimizers.Adam(0.1)
    lengths = tf.fill([n], steps)
    for _ in range(60):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(crf.log_likelihood(emissions_in * scale, tags, lengths))
        variables = [crf.scaled_transitions, scale]
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    learned = crf.transitions.numpy()
    assert np.abs(learned - initial).max() > 0.5
    assert learned[0, 1] > learned[0, 0] and learned[1, 0] > learned[1, 1]
    decoded = crf(tf.constant(emissions_in * scale.numpy()), lengths).numpy()
    assert (decoded == tags).all()


# -------------------------------------------------------------------------------------------------------- features
def test_windows_cover_every_word_once_and_read_first_pieces(tiny_bert_dir):
    from bertkit.tokenization import Tokenizer

    tokenizer = Tokenizer.from_bert_dir(tiny_bert_dir)
    words = ("the quick brown fox jumps over the lazy dog and then some unbelievably long words follow "
             "\u200b here").split(" ") * 3
    tags = [[i % 5 for i in range(len(words))]]
    rows, windows = task.make_features(tokenizer, [words], max_len=12, tags=tags)
    assert len(rows) > 3
    owner = {}
    for row, window in zip(rows, windows):
        assert len(row["token_ids"]) <= 12
        assert row["token_ids"][0] == tokenizer.cls_id and row["token_ids"][-1] == tokenizer.sep_id
        for j, (word, owned) in enumerate(zip(window.words, window.owned)):
            first_piece = tokenizer.encode_words([words[word]]).token_ids[1]
            if words[word].strip("\u200b"):
                assert row["token_ids"][row["word_index"][j]] == first_piece
            assert row["tags"][j] == tags[0][word]
            if owned:
                assert word not in owner
                owner[word] = window
    assert sorted(owner) == list(range(len(words)))
    joined = task.join_windows(windows, [r["tags"] for r in rows], [len(words)])
    assert joined == tags


def test_every_training_window_is_seen_once_per_epoch(tiny_bert_dir):
    """The recipe's training data (grouped by length, dynamically padded) covers each window exactly once per epoch."""
    from bertkit.tokenization import Tokenizer

    examples = task.read_examples(CONLL2003 / "dev.jsonl")[:150]
    head = {"tags": task.tag_vocab(examples), "max_len": 16}
    features = task.encode(examples, Tokenizer.from_bert_dir(tiny_bert_dir), head)
    assert len(features) > len(examples)  # max_len 16 cuts long sentences into several windows
    for i, f in enumerate(features):
        f["tags"] = np.full_like(f["tags"], i + 1)  # the window's index (+1: 0 is padding) rides along as its tags
    data = task.training_data(features, head, batch_size=16, seed=3)
    seen = [int(row[0]) - 1 for _, tags in data.dataset.repeat().take(2 * data.steps_per_epoch)
            for row in tags.numpy()]
    n = len(features)
    assert sorted(seen[:n]) == sorted(seen[n:]) == list(range(n))


# ----------------------------------------------------------------------------------- end to end on a tiny random BERT
def head_lines(path, n: int, skip: int = 0) -> list[str]:
    return Path(path).read_text(encoding="utf-8").splitlines()[skip:skip + n]


def small_splits(work: Path) -> dict[str, Path]:
    """80 training, 30 dev and 30 test sentences from the shipped CoNLL-2003 dev split."""
    files = {}
    for split, n, skip in (("train", 80, 0), ("dev", 30, 80), ("test", 30, 110)):
        files[split] = work / f"{split}.jsonl"
        files[split].write_text("\n".join(head_lines(CONLL2003 / "dev.jsonl", n, skip)) + "\n", encoding="utf-8")
    return files


def tiny_argv(tiny_bert_dir, out, files, *extra) -> list[str]:
    return ["--bert-dir", str(tiny_bert_dir), "--output-dir", str(out), "--epochs", "2", "--batch-size", "16",
            "--max-len", "32", "--lr", "2e-3", "--seed", "3", "--train-file", str(files["train"]),
            "--dev-file", str(files["dev"]), *extra]


UNLABELLED_TEST = [{"id": "t0", "tokens": ["Peter", "Blackburn", "visited", "U.S.", "troops", "in", "Germany"]},
                   {"id": "t1", "text": "EU rejects German call to boycott British lamb ."},
                   {"id": "t2", "text": "\u200b"}]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_bert_dir):
    """A two-epoch CRF run on 80 CoNLL sentences with a tiny random BERT, an unlabelled test file and --export."""
    work = tmp_path_factory.mktemp("sequence_labeling")
    files = small_splits(work)
    test = jsonl(work, UNLABELLED_TEST, "test.jsonl")
    out = work / "run"
    assert train_main(RECIPE, tiny_argv(tiny_bert_dir, out, files, "--test-file", str(test), "--export")) == 0
    return out


def test_train_writes_report_and_run_config(tiny_run):
    report = json.loads((tiny_run / "report.json").read_text())
    assert report["task"] == "sequence_labeling" and report["headline"]["metric"] == "f1"
    assert report["split"] == "dev" and 0.0 <= report["headline"]["value"] <= 1.0
    assert set(report["metrics"]["per_type"]) <= {"PER", "LOC", "ORG", "MISC"}
    assert report["metrics"]["repaired_tags"] == 0
    assert "Entity-type confusion" in (tiny_run / "report.md").read_text()
    config = json.loads((tiny_run / "run_config.json").read_text())
    assert config["recipe"] == {"name": "sequence_labeling", "folder": str(RECIPE)}
    head = config["head"]
    assert head["tags"][0] == "O" and len(head["tags"]) == 9 and head["scheme"] == "bio"
    assert (head["max_len"], head["use_crf"], head["crf_lr_multiplier"]) == (32, True, 200.0)


def test_unlabelled_test_file_gives_predictions_with_ids(tiny_run):
    """Competition flow: a test file without tags -> OUTPUT_DIR/predictions.jsonl, one line per input with its id."""
    predictions = read_jsonl_lines(tiny_run / "predictions.jsonl")
    assert [p["id"] for p in predictions] == ["t0", "t1", "t2"]
    assert predictions[0]["text"] == "Peter Blackburn visited U.S. troops in Germany"
    assert [len(p["tags"]) for p in predictions] == [7, 9, 0]
    assert predictions[2]["entities"] == []
    for p in predictions:
        assert all(p["text"][e["start"]:e["end"]] == e["text"] for e in p["entities"])
    report = json.loads((tiny_run / "report.json").read_text())
    assert report["metrics"]["predictions"]["inputs"] == 3


def test_crf_transitions_were_trained(tiny_run, tiny_bert_dir):
    """The transitions moved from their initialisation (same seed, same initial weights) and learned BIO: in the
    training data an I-X never follows O, so O -> I-X scores below O -> B-X."""
    import tensorflow as tf

    predictor = load_run(tiny_run)
    tf.keras.utils.set_random_seed(3)
    fresh = task.build_model(tiny_bert_dir, predictor.head)
    trained = predictor.model.crf.transitions.numpy()
    assert np.abs(trained - fresh.crf.transitions.numpy()).max() > 0.05
    tags = predictor.head["tags"]
    for kind in ("PER", "LOC", "ORG", "MISC"):
        assert trained[0, tags.index(f"I-{kind}")] < trained[0, tags.index(f"B-{kind}")], kind


TEXTS = ["EU rejects German call to boycott British lamb .", "  Peter Blackburn (U.S.) met\u00a0Jean-Pierre's "
         "café in Zürich\u200b today. O'Neill doesn't 'sorry' it's", "Germany's 'S lab", "",
         "Germany 's representative to the European Union", "\u200b"]


def test_predict_py_and_load_run_agree_on_raw_text_and_tokens(tiny_run, tmp_path, monkeypatch, capsys):
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    assert predict_main(RECIPE, ["--run-dir", str(tiny_run), "--input", str(tmp_path / "in.txt"),
                                 "--output", str(tmp_path / "out.jsonl"), "--batch-size", "2"]) == 0
    results = read_jsonl_lines(tmp_path / "out.jsonl")
    texts = [t for t in TEXTS if t]  # a blank line is no input
    assert [r["text"] for r in results] == texts
    for r in results:
        assert len(r["tags"]) == len(split_words(r["text"]))
        for e in r["entities"]:
            assert r["text"][e["start"]:e["end"]] == e["text"]
    predictor = load_run(tiny_run)
    assert predictor.predict(texts) == results  # raw strings in, the same outputs

    # JSONL token lists with ids (gold tags are checked, not used) on stdin, and the same records from Python
    records = [{"id": i, "tokens": split[:], "tags": ["O"] * len(split)}
               for i, split in enumerate(w.split() for w in texts[:3])]
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("".join(json.dumps(r) + "\n" for r in records)))
    assert predict_main(RECIPE, ["--run-dir", str(tiny_run)]) == 0
    streamed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [s["id"] for s in streamed] == [0, 1, 2] and streamed[0]["text"] == texts[0]
    assert predictor.predict(records, batch_size=1) == streamed


def test_predict_bad_input_names_line_and_field(tiny_run, tmp_path, capsys):
    bad = jsonl(tmp_path, [{"tokens": ["fine"]}, {"tokens": ["a", ""]}], "bad.jsonl")
    assert predict_main(RECIPE, ["--run-dir", str(tiny_run), "--input", str(bad)]) == 2
    assert f"{bad}:2: field 'tokens': token 1 is ''" in capsys.readouterr().err


def test_export_reload_in_fresh_process_gives_same_words_tags_and_entities(tiny_run):
    from recipes.sequence_labeling.export import entities_from_export

    from bertkit.testing import serve_in_fresh_process

    served = {k: np.array(v) for k, v in serve_in_fresh_process(tiny_run / "export", TEXTS).items()}
    served["tags"] = np.array([[t.encode() for t in row] for row in served["tags"]], dtype=object)
    predictor = load_run(tiny_run)
    head = {**predictor.head, "max_len": 512}  # the export reads whole texts (up to 512 pieces), no windows of 32
    expected = iter(task.predict(predictor.model, predictor.tokenizer, predictor.examples([t for t in TEXTS if t]),
                                 head))
    for i, text in enumerate(TEXTS):
        words = split_words(text)
        n = int(served["num_words"][i])
        assert int(served["num_tagged"][i]) == n
        assert list(served["words"][i][:n]) == [w for w, _, _ in words]
        assert list(zip(served["starts"][i][:n], served["ends"][i][:n])) == [(s, e) for _, s, e in words]
        if text:
            prediction = next(expected)
            assert [t.decode() for t in served["tags"][i][:n]] == prediction["tags"]
            assert entities_from_export(text, served, i) == prediction["entities"]


def test_softmax_head_trains_and_reports_on_a_labelled_test_file(tiny_bert_dir, tmp_path):
    files = small_splits(tmp_path)
    out = tmp_path / "run"
    assert train_main(RECIPE, tiny_argv(tiny_bert_dir, out, files, "--test-file", str(files["test"]),
                                        "--no-crf", "--epochs", "1")) == 0
    assert json.loads((out / "run_config.json").read_text())["head"]["use_crf"] is False
    report = json.loads((out / "report.json").read_text())
    assert report["split"] == "test" and report["metrics"]["support"] > 0
    assert not (out / "predictions.jsonl").exists()
    path = jsonl(tmp_path, [{"tokens": ["Peter", "Blackburn", "visited", "U.S.", "troops"]}], "tokens.jsonl")
    assert predict_main(RECIPE, ["--run-dir", str(out), "--input", str(path), "--output",
                                 str(tmp_path / "o.jsonl")]) == 0
    result = read_jsonl_lines(tmp_path / "o.jsonl")[0]
    assert result["text"] == "Peter Blackburn visited U.S. troops" and len(result["tags"]) == 5
    assert all(result["text"][e["start"]:e["end"]] == e["text"] for e in result["entities"])


def test_bad_input_exits_2_with_one_line(tiny_bert_dir, tmp_path, capsys):
    bad = write(tmp_path, "bad.txt", "EU B-ORG\nrejects O\n\nPeter B-PER Blackburn\n")
    argv = ["--bert-dir", str(tiny_bert_dir), "--train-file", str(bad), "--dev-file", str(bad),
            "--output-dir", str(tmp_path / "r")]
    assert train_main(RECIPE, argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"error: {bad}:4: field 'columns': 3 columns, expected 2 as on the first token line"


def test_train_rejects_unseen_dev_tag_before_training(tiny_bert_dir, tmp_path, capsys):
    train_file = jsonl(tmp_path, [{"tokens": ["EU", "rejects"], "tags": ["B-ORG", "O"]}], "train.jsonl")
    dev_file = jsonl(tmp_path, [{"tokens": ["Peter"], "tags": ["B-PER"]}], "dev.jsonl")
    code = train_main(RECIPE, ["--bert-dir", str(tiny_bert_dir), "--output-dir", str(tmp_path / "run"),
                               "--train-file", str(train_file), "--dev-file", str(dev_file)])
    assert code == 2
    assert f"{dev_file}:1: field 'tags': tag 'B-PER' does not occur in the training data" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing was started


def test_an_all_o_training_set_is_an_error(tiny_bert_dir, tmp_path, capsys):
    train_file = jsonl(tmp_path, [{"tokens": ["EU", "rejects"], "tags": ["O", "O"]}], "train.jsonl")
    code = train_main(RECIPE, ["--bert-dir", str(tiny_bert_dir), "--output-dir", str(tmp_path / "run"),
                               "--train-file", str(train_file), "--dev-file", str(train_file)])
    assert code == 2
    assert f"{train_file}: field 'tags': every tag is O" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_models_built_on_one_encoder_share_its_weights(tiny_bert_dir):
    """``build_model(..., encoder=)`` uses that very encoder (what the multi-task trainer relies on)."""
    import tensorflow as tf

    from bertkit.testing import check_shared_encoder

    head = {"tags": ["O", "B-PER", "I-PER"], "dropout": 0.1, "use_crf": True, "crf_lr_multiplier": 200.0}
    first, second, _ = check_shared_encoder(
        task.build_model, tiny_bert_dir, head,
        {"token_ids": tf.constant([[3, 40, 41, 42, 4]]), "segment_ids": tf.zeros((1, 5), tf.int32),
         "word_index": tf.constant([[1, 2, 3]])})
    assert first.encoder is second.encoder


# ------------------------------------------------------------------------------------------------------------ slow
@pytest.mark.slow
def test_real_encoder_beats_entity_f1_on_conll_slice(default_bert_dir, tmp_path):
    """Default encoder, 1,000 CoNLL-2003 train sentences (seeded), 2 epochs at batch 16, tested on the first 500
    test sentences: entity F1 must exceed 0.65 (measured figures in the README; chance is ~0: an entity counts only
    with exact span and type)."""
    test = tmp_path / "test.jsonl"
    test.write_text("\n".join(head_lines(CONLL2003 / "test.jsonl", 500)) + "\n", encoding="utf-8")
    out = tmp_path / "run"
    assert train_main(RECIPE, ["--bert-dir", str(default_bert_dir), "--train-file", str(CONLL2003 / "train.jsonl"),
                               "--dev-file", str(CONLL2003 / "dev.jsonl"), "--max-dev-examples", "200",
                               "--test-file", str(test), "--max-train-examples", "1000", "--epochs", "2",
                               "--batch-size", "16", "--lr", "1e-4", "--max-len", "64", "--output-dir", str(out),
                               "--seed", "1"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["split"] == "test" and report["metrics"]["support"] > 0
    assert report["headline"]["value"] > 0.65, report["headline"]
