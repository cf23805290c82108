"""Reports: markdown tables, plots, and the run report a Trainer writes (json + md + PNGs)."""

import json

import numpy as np
import pytest

from bertkit.errors import ConfigError
from bertkit.reports import md_table, per_class_table, plot_confusion, plot_history

PNG = b"\x89PNG\r\n\x1a\n"


def test_md_table_formats_escapes_and_aligns():
    text = md_table(["label", "f1", "support"], [["a|b", 0.123456, 1200], ["new\nline", np.float32(1), None]])
    lines = text.splitlines()
    assert lines[0] == "| label | f1 | support |"
    assert lines[1] == "| :--- | ---: | ---: |"
    assert lines[2] == "| a\\|b | 0.1235 | 1,200 |"
    assert lines[3] == "| new line | 1.0000 | – |"
    assert "| 2e-05 |" in md_table(["lr"], [[2e-5]]) and "| 0.0000 |" in md_table(["lr"], [[0.0]])
    with pytest.raises(ValueError, match="row 0 has 1 cells"):
        md_table(["a", "b"], [["x"]])


def test_per_class_table():
    text = per_class_table({"neg": {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2}})
    assert "| neg | 1.0000 | 0.5000 | 0.6667 | 2 |" in text


def test_plots_write_png(tmp_path):
    history = {"epoch": [1, 2, 3], "loss": [0.9, 0.5, 0.4], "dev_f1": [0.3, 0.6, 0.65]}
    assert plot_history(history, ["loss", "missing"], tmp_path / "loss.png").read_bytes()[:8] == PNG
    assert plot_history(history, ["missing"], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
    assert plot_confusion([[3, 1], [0, 4]], ["neg", "pos"], tmp_path / "c.png").read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="for 3 labels"):
        plot_confusion([[1]], ["a", "b", "c"], tmp_path / "bad.png")


def test_plot_history_from_metrics_csv(tmp_path):
    from bertkit.training import write_metrics_csv

    csv = write_metrics_csv(tmp_path / "metrics.csv", [{"epoch": 1, "loss": 1.0}, {"epoch": 2, "loss": 0.5}])
    assert plot_history(csv, ["loss"], tmp_path / "loss.png").read_bytes()[:8] == PNG


def _args(tmp_path, *extra):
    from bertkit.cli import build_parser, parse_args

    parser = build_parser("toy", train_file=None, dev_file=None, test_file=None, epochs=2, batch_size=4,
                          max_len=16, lr=1e-2)
    return parse_args(parser, ["--bert-dir", str(tmp_path / "no-bert"), "--output-dir", str(tmp_path / "run"),
                               *extra])


def _trained(tmp_path):
    import tensorflow as tf

    from bertkit.batching import make_dataset
    from bertkit.training import Trainer

    def build():
        token_ids = tf.keras.Input((None,), dtype="int32", name="token_ids")
        pooled = tf.keras.layers.GlobalAveragePooling1D()(tf.keras.layers.Embedding(20, 4)(token_ids))
        return tf.keras.Model(token_ids, tf.keras.layers.Dense(2)(pooled))

    rng = np.random.default_rng(0)
    features = [{"token_ids": rng.integers(1, 20, int(n)), "label": int(n) % 2} for n in rng.integers(2, 9, 20)]
    trainer = Trainer(_args(tmp_path), "toy", verbose=0)
    model = trainer.compile(build, steps_per_epoch=5,
                            loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    values = iter([0.6, 0.8])
    trainer.fit(model, make_dataset(features, 4, input_keys=("token_ids",), shuffle=True), steps_per_epoch=5,
                evaluate=lambda m: {"macro f1": next(values)}, headline="macro f1")
    return trainer


def test_write_report(tmp_path):
    trainer = _trained(tmp_path)
    plot_confusion([[3, 1], [0, 4]], ["neg", "pos"], trainer.output_dir / "confusion.png")
    metrics = {"macro f1": 0.75, "accuracy": 0.8, "per_class": {"neg": {"precision": 1.0, "recall": 0.75,
                                                                         "f1": 0.857, "support": 4}}}
    path = trainer.write_report(dataset="toyset", split="test", headline="macro f1", metrics=metrics,
                                markdown_sections=[("Per class", per_class_table(metrics["per_class"])),
                                                   "## Wrong predictions\n\n- 'meh' -> pos (gold neg)"],
                                figures={"confusion matrix": trainer.output_dir / "confusion.png"})
    report = json.loads(path.read_text())
    assert {"task", "dataset", "split", "headline", "metrics", "train", "encoder", "args"} <= set(report)
    assert report["headline"] == {"metric": "macro f1", "value": 0.75}
    assert report["task"] == "toy" and report["dataset"] == "toyset" and report["split"] == "test"
    assert report["train"]["epochs"] == 2 and report["train"]["steps"] == 10
    assert report["train"]["seconds"] > 0 and report["train"]["examples_per_second"] > 0
    assert report["args"]["epochs"] == 2 and report["metrics"]["per_class"]["neg"]["support"] == 4
    out = trainer.output_dir
    assert (out / "loss.png").read_bytes()[:8] == PNG and (out / "macro_f1.png").read_bytes()[:8] == PNG
    md = (out / "report.md").read_text()
    assert "**macro f1 = 0.7500**" in md and "## Per class" in md and "| neg | 1.0000 |" in md
    assert "## Wrong predictions" in md and "![confusion matrix](confusion.png)" in md
    assert "![dev macro f1 per epoch](macro_f1.png)" in md and "## Per epoch" in md
    assert "![learning rate per step](lr_schedule.png)" in md and (out / "lr_schedule.png").read_bytes()[:8] == PNG


def test_report_headline_must_be_a_number(tmp_path):
    from bertkit.training import Trainer

    trainer = Trainer(_args(tmp_path), "toy", verbose=0)
    with pytest.raises(ConfigError, match="headline metric 'f1' is not a number"):
        trainer.write_report(dataset="d", split="test", headline="f1", metrics={"acc": 1.0})
    path = trainer.write_report(dataset="d", split="test", headline=("f1", 0.5), metrics={"acc": 1.0})
    assert json.loads(path.read_text())["train"]["epochs"] == 0  # eval-only: no training
