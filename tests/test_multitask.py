"""Joint multi-task fine-tuning (bertkit.multitask): the samplers' task frequencies against their formulas, and on a
tiny random checkpoint a joint run of two recipes whose losses fall, whose task folders load with load_run, whose
one multi-signature SavedModel serves each task like its predictor in a fresh process, and which resumes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bertkit import datasets
from bertkit.errors import ConfigError
from bertkit.multitask import epoch_order, epoch_quotas, main, run, sampling_probabilities
from bertkit.optim import XLA_UPDATES_MIN_STEPS

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------------- samplers
SIZES = [67_349, 3_668, 922, 40]  # SST-2, MRPC, CoNLL04 train sizes and a tiny task


def _frequencies(sampler, sizes, temperature, *, epochs=300, steps=500, seed=7):
    probabilities = sampling_probabilities(sampler, sizes, temperature)
    quotas = epoch_quotas(probabilities, steps)
    draws = np.concatenate([epoch_order(sampler, quotas, seed, epoch) for epoch in range(epochs)])
    assert len(draws) == epochs * steps
    return np.bincount(draws, minlength=len(sizes)) / len(draws)


@pytest.mark.parametrize("sampler, temperature, formula", [
    ("proportional", 1.0, lambda n, t: n / n.sum()),
    ("temperature", 2.0, lambda n, t: n ** (1 / t) / (n ** (1 / t)).sum()),
    ("temperature", 5.0, lambda n, t: n ** (1 / t) / (n ** (1 / t)).sum()),
    ("round_robin", 1.0, lambda n, t: np.full(len(n), 1 / len(n))),
])
def test_each_sampler_draws_tasks_at_the_frequencies_of_its_formula(sampler, temperature, formula):
    n = np.asarray(SIZES, dtype=float)
    expected = formula(n, temperature)
    observed = _frequencies(sampler, SIZES, temperature)
    # Quotas are steps * p rounded (largest remainders; every task at least one batch): within 1/steps of p.
    assert np.abs(observed - expected).max() <= 1 / 500 + 1e-12, (observed, expected)
    assert observed.sum() == pytest.approx(1.0)


def test_a_wrong_sampler_would_fail_the_frequency_check():
    """The check above can fail: proportional frequencies are far from the temperature formula's."""
    n = np.asarray(SIZES, dtype=float)
    temperature_formula = n ** 0.5 / (n ** 0.5).sum()
    assert np.abs(_frequencies("proportional", SIZES, 1.0) - temperature_formula).max() > 0.1


def test_task_orders_are_seeded_shuffled_per_epoch_and_round_robin_alternates():
    quotas = [5, 3, 2]
    first, again = epoch_order("proportional", quotas, 1, 0), epoch_order("proportional", quotas, 1, 0)
    assert first.tolist() == again.tolist()  # a resumed run replays the same order
    assert first.tolist() != epoch_order("proportional", quotas, 1, 1).tolist()
    assert sorted(first.tolist()) == [0] * 5 + [1] * 3 + [2] * 2
    assert epoch_order("round_robin", quotas, 1, 0).tolist() == [0, 1, 2, 0, 1, 2, 0, 1, 0, 0]
    # temperature 1 is proportional, and a very high temperature tends to uniform
    assert np.allclose(sampling_probabilities("temperature", SIZES, 1.0),
                       sampling_probabilities("proportional", SIZES))
    assert np.allclose(sampling_probabilities("temperature", SIZES, 1e6), 0.25, atol=1e-4)
    assert epoch_quotas([0.999, 0.001], 10) == [9, 1]  # every task trains at least once per epoch
    with pytest.raises(ConfigError, match="temperature"):
        sampling_probabilities("temperature", SIZES, 0.0)


# ------------------------------------------------------------------------------------------------ a joint run
def _slice(split_path: Path, target: Path, n: int) -> str:
    with open(split_path, encoding="utf-8") as f:
        lines = [line for _, line in zip(range(n), f)]
    target.write_text("".join(lines), encoding="utf-8")
    return str(target)


def _config(tmp_path: Path, n_train=96, n_dev=32, batch_size=16) -> Path:
    """Two tasks on slices of the shipped data; the sentiment recipe is a copy in a user's project (any folder
    joins by path)."""
    data = tmp_path / "data"
    data.mkdir()
    copied = tmp_path / "my_project" / "my_sentiment"
    shutil.copytree(REPO / "recipes" / "sentiment", copied, ignore=shutil.ignore_patterns("__pycache__"))
    tasks = []
    for folder, dataset, extra in ((copied, "sst2", []),
                                   (REPO / "recipes" / "sequence_labeling", "conll2003", ["--max-len", "64"])):
        files = {f"{split}_file": _slice(datasets.file(dataset, split), data / f"{dataset}_{split}.jsonl", n)
                 for split, n in (("train", n_train), ("dev", n_dev), ("test", n_dev))}
        tasks.append({"folder": str(folder), **files, "args": ["--batch-size", str(batch_size), *extra]})
    config = tmp_path / "joint.json"
    config.write_text(json.dumps({"tasks": tasks}), encoding="utf-8")
    return config


@pytest.fixture(scope="module")
def joint_run(tmp_path_factory, tiny_bert_dir):
    tmp_path = tmp_path_factory.mktemp("joint")
    out = tmp_path / "run"
    config = _config(tmp_path, n_train=144, batch_size=8)  # 18 steps a task and epoch: 180 < XLA_UPDATES_MIN_STEPS
    report = run(["--config", str(config), "--bert-dir", str(tiny_bert_dir), "--output-dir", str(out),
                  "--epochs", "5", "--lr", "5e-3", "--warmup-ratio", "0", "--export", "--loss-weights",
                  "sentiment=1.0,sequence_labeling=0.5"])
    return out, report


def test_joint_training_of_two_heads_lowers_each_tasks_loss(joint_run):
    """lr 5e-3: the tiny encoder reads SST-2 letter by letter, and at 2e-3 the sentiment loss fell only 5-20% in five
    epochs (0.70 -> 0.66 in one run on TF 2.21: too close to the bar); at 5e-3 it fell to about 0.23 on both stacks
    (tagging: 11 -> 4.6) while length buckets made about 12 small batches of a 96-sentence slice. Batches grouped by
    length are whole batches: 6 of 16 a pass, and in one CI run (TF 2.21) the loss only went 0.73 -> 0.68. Hence 144
    sentences in batches of 8 (18 steps a task and pass): 1.05 -> 0.34 (tagging 9.9 -> 5.2) on both stacks."""
    out, report = joint_run
    rows = report["joint"]["rows"]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5]
    for task in ("sentiment", "sequence_labeling"):
        losses = [r[f"{task}_loss"] for r in rows]
        assert losses[-1] < 0.9 * losses[0], (task, losses)
    assert report["tasks"] == ["sentiment", "sequence_labeling"]
    assert set(report["alone"]) == {"sentiment", "sequence_labeling"}  # the same tasks trained alone
    text = (out / "report.md").read_text(encoding="utf-8")
    assert "highest mean over the tasks of the normalised dev headline" in text and "joint − alone" in text
    best = max(rows, key=lambda r: r["mean_dev"])
    assert report["joint"]["best_epoch"] == best["epoch"]
    # the Trainer's rule for AdamW's XLA updates: this run is short, so plain ops, and run_config.json says why
    steps = json.loads((out / "result.json").read_text())["steps"]
    updates = json.loads((out / "run_config.json").read_text())["optimizer_updates"]
    assert steps < XLA_UPDATES_MIN_STEPS and updates["xla"] is False
    assert updates["reason"] == f"a short run ({steps} steps < {XLA_UPDATES_MIN_STEPS}): XLA kernels would not " \
                                "repay their compilation"
    # the same per-task budget: the run alone trained as many batches of its task as the joint run did
    for task in ("sentiment", "sequence_labeling"):
        joint_result = json.loads((out / "result.json").read_text())
        alone_result = json.loads((out / "baselines" / task / "result.json").read_text())
        assert alone_result["batches"][task] == joint_result["batches"][task]


def test_each_task_folder_loads_with_load_run_and_the_one_export_serves_every_task_alike(joint_run):
    import tensorflow as tf

    from bertkit.recipe import load_run
    from bertkit.testing import serve_signatures_in_fresh_process

    out, _ = joint_run
    texts = ["a wonderful and funny movie", "the worst film of the year , boring and bad"]
    sentences = ["John lives in London .", "Google was founded by Mary in New York"]
    sentiment_run = load_run(out / "sentiment")
    assert sentiment_run.recipe.folder.name == "my_sentiment"  # the copied recipe, by the path the run recorded
    sentiment = sentiment_run.predict(texts)
    tagger = load_run(out / "sequence_labeling").predict(sentences)

    calls = serve_signatures_in_fresh_process(out / "export", {"sentiment": texts, "sequence_labeling": sentences})
    served = calls["sentiment"]
    assert served["label"] == [p["label"] for p in sentiment]
    expected = [[p["probabilities"][label] for label in sorted(p["probabilities"])] for p in sentiment]
    assert np.allclose(served["probabilities"], expected, atol=1e-4)
    served = calls["sequence_labeling"]
    for row, prediction in enumerate(tagger):
        n = served["num_tagged"][row]
        assert served["tags"][row][:n] == prediction["tags"]

    # one encoder in the SavedModel: its variables are not duplicated per task
    loaded = tf.saved_model.load(str(out / "export"))
    names = [v.name for v in loaded.model_variables]
    embeddings = [n for n in names if "Embedding-Token" in n]
    assert len(embeddings) == 1, embeddings
    assert sorted(loaded.signatures) == ["sentiment", "sentiment_labels", "sequence_labeling", "tasks"]


def test_task_options_of_the_joint_run_are_refused_per_task(tmp_path, tiny_bert_dir, capsys):
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"tasks": [{"folder": str(REPO / "recipes" / "sentiment"),
                                             "args": ["--lr", "1e-3"]}]}), encoding="utf-8")
    assert main(["--config", str(config), "--bert-dir", str(tiny_bert_dir), "--output-dir",
                 str(tmp_path / "out")]) == 2
    assert "task sentiment: --lr is an option of the joint run" in capsys.readouterr().err


def test_an_interrupted_joint_run_resumes_to_the_end(tmp_path, tiny_bert_dir, capsys):
    """SIGINT mid-run backs up; the same command plus --resume finishes every epoch and writes the report. The
    interrupted run is a process of its own (it gets the signal); the refused restart and the resumed run are the
    same command line run in this process (``main``), which spares two TensorFlow start-ups."""
    config = _config(tmp_path, n_train=160)
    out = tmp_path / "run"
    argv = ["--config", str(config), "--bert-dir", str(tiny_bert_dir), "--output-dir", str(out), "--epochs", "3",
            "--lr", "1e-3", "--baselines", "none", "--backup-every-minutes", "0.001"]
    env = {**os.environ, "PYTHONPATH": "", "PYTHONFAULTHANDLER": "1"}  # a crash shows its Python stack
    process = subprocess.Popen([sys.executable, "-m", "bertkit.multitask", *argv], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    state = out / "backup" / "multitask_state.json"
    deadline = time.monotonic() + 240
    while not state.is_file() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.2)
    assert state.is_file(), process.communicate()[1][-2000:]
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "--resume" in stderr
    stopped_at = json.loads(state.read_text())["step"]

    capsys.readouterr()
    assert main(argv) == 2 and "pass --resume" in capsys.readouterr().err  # never silently restarted

    assert main(argv + ["--resume"]) == 0
    assert f"resuming {out} at step {stopped_at}" in capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    assert [r["epoch"] for r in result["rows"]] == [1, 2, 3]
    assert not (out / "backup").exists()


@pytest.mark.parametrize("best_epoch", [2, 1])
def test_a_dev_only_task_reports_the_kept_epochs_evaluation_without_predicting_dev_again(tmp_path, tiny_bert_dir,
                                                                                       counted_dev_predictions,
                                                                                       best_epoch):
    """A task with no test file reports on dev: when the kept epoch is the last one evaluated, its dev predictions
    are the report's (dev is predicted once per epoch, no more); when an earlier epoch is kept, dev is predicted
    again with its weights (bertkit.recipe.EpochPredictions, shared with a recipe's own train)."""
    folder = REPO / "recipes" / "sentiment"
    calls = counted_dev_predictions(folder, best_epoch)
    files = {f"{split}_file": _slice(datasets.file("sst2", split), tmp_path / f"{split}.jsonl", n)
             for split, n in (("train", 16), ("dev", 8))}
    config = tmp_path / "joint.json"
    config.write_text(json.dumps({"tasks": [{"folder": str(folder), **files, "args": ["--batch-size", "8"]}]}),
                      encoding="utf-8")
    out = tmp_path / "run"
    assert main(["--config", str(config), "--bert-dir", str(tiny_bert_dir), "--output-dir", str(out),
                 "--epochs", "2", "--baselines", "none"]) == 0
    result = json.loads((out / "result.json").read_text())
    assert result["best_epoch"] == best_epoch and result["split"]["sentiment"] == "dev"
    if best_epoch == 2:  # the second evaluation is the report's: 0.9 from the score it got then
        assert calls == [8, 8]
        assert result["metrics"]["sentiment"]["accuracy"] == pytest.approx(0.9)
    else:  # epoch 1's weights restored: dev predicted again for the report
        assert calls == [8, 8, 8]
        assert result["metrics"]["sentiment"]["accuracy"] == pytest.approx(0.5)


def test_config_errors_name_the_file_and_entry(tmp_path, tiny_bert_dir, capsys):
    from bertkit.multitask import read_task_config

    config = tmp_path / "joint.json"
    config.write_text(json.dumps({"tasks": [{"folder": "x", "dataset": "sst3"}]}), encoding="utf-8")
    with pytest.raises(Exception, match=r"joint.json.*tasks\[0\]\.dataset.*no shipped dataset 'sst3'"):
        read_task_config(config)
    config.write_text(json.dumps({"tasks": [{"folder": str(REPO / "recipes" / "sentiment"), "dataset": "mrpc",
                                             "weight": "heavy"}]}), encoding="utf-8")
    with pytest.raises(Exception, match=r"tasks\[0\]\.weight"):
        read_task_config(config)
    config.write_text(json.dumps({"tasks": [{"folder": str(REPO / "recipes" / "sentiment"), "dataset": "mrpc"}]}),
                      encoding="utf-8")
    entry, = read_task_config(config)
    assert entry["train_file"] == datasets.file("mrpc", "train") and entry["test_file"] == datasets.file("mrpc", "test")
    for argv, message in ((["--baselines", "nope"], "--baselines: no task nope"),
                          (["--loss-weights", "sentiment=-1"], "must be a positive number"),
                          (["--sampler", "random"], "invalid choice")):
        assert main(["--config", str(config), "--bert-dir", str(tiny_bert_dir), "--output-dir",
                     str(tmp_path / "out"), *argv]) == 2
        assert message in capsys.readouterr().err


def test_a_tasks_select_metric_replaces_its_headline_in_the_checkpoint_rule():
    """A task whose args name --select-metric counts that dev metric (a score) in the mean that picks the kept
    epoch, the headline is still recorded; a metric the task does not report is a clear error naming the task."""
    import argparse

    from bertkit.multitask import JointRun, TaskData
    from bertkit.recipe import EpochPredictions, load_recipe

    sentiment, spans = load_recipe(REPO / "recipes" / "sentiment"), load_recipe(REPO / "recipes" / "span_extract")

    def task(name, recipe, select, metrics):
        class Scored:  # the recipe, with a fixed dev score
            HEADLINE, headline_scale, selection = recipe.HEADLINE, recipe.headline_scale, recipe.selection

            @staticmethod
            def score(examples, predictions, head):
                return dict(metrics)
        return TaskData(name=name, recipe=Scored, args=argparse.Namespace(select_metric=select), weight=1.0,
                        train=[], dev=[], test=None, head={}, features=[], batch_size=8)

    tasks = [task("pairs", sentiment, "macro_f1", {"accuracy": 0.70, "macro_f1": 0.40}),
             task("qa", spans, None, {"f1": 60.0, "exact_match": 50.0})]
    assert [t.dev_metric for t in tasks] == ["macro_f1", "f1"] and spans.headline_scale == 100
    run = argparse.Namespace(tasks=tasks, dev_predictions=[EpochPredictions(lambda examples, head: [])] * 2)
    row = JointRun._evaluate_dev(run, 1)
    assert row["pairs_dev_macro_f1"] == 0.40 and row["pairs_dev_accuracy"] == 0.70  # the headline still shown
    assert row["pairs_dev_normalised"] == 0.40 and row["qa_dev_normalised"] == 0.60
    assert row["mean_dev"] == pytest.approx(0.50)

    run.tasks = [task("pairs", sentiment, "auc", {"accuracy": 0.70, "macro_f1": 0.40})]
    with pytest.raises(ConfigError, match=r"task pairs: the dev metrics have no number 'auc'.*\['accuracy', "
                                          r"'macro_f1'\]"):
        JointRun._evaluate_dev(run, 1)
