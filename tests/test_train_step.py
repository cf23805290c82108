"""--train-step auto (bertkit.train_step): the estimate over a run, when it must not measure, the real probe in a child
process, its cache, and the Trainer's use of the decision."""

import json

import numpy as np
import pytest
import tensorflow as tf

from bertkit import train_step
from bertkit.cli import build_parser, parse_args
from bertkit.errors import BertkitError, ConfigError
from bertkit.optim import XLA_UPDATES_MIN_STEPS, _xla_updates_supported, xla_updates_choice
from bertkit.train_step import PROBE_MIN_STEPS, choose, decide, fit_step, probe, probe_length
from bertkit.training import Trainer, read_run_config

XLA_WINS = {"graph_step_s": 1.0, "xla_step_s": 0.6, "xla_compile_s": 5.0}  # the Zen 5 box's shape of figures


def test_decide_weighs_the_compilations_against_the_per_step_gain():
    # 1,000 steps at 1.0 s against 0.6 s + 10 compilations of 5 s: 1,000 against 650 -> xla
    assert decide(XLA_WINS, 1000, 10) == ("xla", {"graph_estimate_s": 1000.0, "xla_estimate_s": 650.0,
                                                   "steps": 1000, "padded_lengths": 10})
    # the same per-step gain, 80 padded lengths: 1,000 against 1,000 -> graph
    assert decide(XLA_WINS, 1000, 80)[0] == "graph"
    # XLA 5% faster per step and compiling for nothing: under the 10% margin -> graph
    assert decide({"graph_step_s": 1.0, "xla_step_s": 0.95, "xla_compile_s": 0.0}, 10_000, 1)[0] == "graph"
    # XLA slower per step (the Zen 4 box): never
    assert decide({"graph_step_s": 1.0, "xla_step_s": 1.3, "xla_compile_s": 0.0}, 10_000, 1)[0] == "graph"


def test_probe_length_is_the_median_example_length_rounded_up_to_16():
    assert probe_length([5, 9, 12, 40, 200]) == 16
    assert probe_length([17, 17, 30, 64, 64]) == 32
    assert probe_length([3]) == 16


@pytest.fixture
def cache_in(tmp_path, monkeypatch):
    monkeypatch.setenv("BERTKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / train_step.CACHE_FILE


def _choose(bert_dir, **overrides):
    kwargs = dict(bert_dir=bert_dir, batch_size=4, steps=PROBE_MIN_STEPS,
                  example_lengths=[5, 6, 6, 7, 8, 9, 9, 10, 11, 12, 12, 12])
    return choose(**{**kwargs, **overrides})


def test_fit_step_runs_one_training_step_per_call_over_the_batches_cycled():
    inputs = tf.keras.Input((3,))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(1, kernel_initializer="ones", use_bias=False)(inputs))
    model.compile(optimizer=tf.keras.optimizers.SGD(0.0), loss="mse")  # lr 0: each batch's loss stays the same
    batches = [(np.ones((2, 3), np.float32), np.zeros((2, 1), np.float32)),  # outputs 3, loss 9
               (np.ones((2, 3), np.float32), np.full((2, 1), 2.0, np.float32))]  # loss 1
    step = fit_step(model, batches)
    # the loss fit logs: the mean over the steps so far (9, 1, 9, 1, 9)
    assert [step() for _ in range(5)] == pytest.approx([9.0, 5.0, 19 / 3, 5.0, 29 / 5])
    assert int(model.optimizer.iterations) == 5
    with pytest.raises(ConfigError, match="at least one batch"):
        fit_step(model, [])


def test_auto_keeps_the_graph_step_unmeasured_where_it_must(tiny_bert_dir, cache_in, monkeypatch):
    def no_probe(*args, **kwargs):
        raise AssertionError("probed")

    monkeypatch.setattr(train_step, "probe", no_probe)
    cases = {"--eval-only": dict(eval_only=True), "--deterministic": dict(deterministic=True),
             "refuses XLA: crf": dict(refusals=["crf (CRF: tfa)"]),
             "2 replicas": dict(replicas=2), "no example lengths": dict(example_lengths=None),
             f"a short run ({PROBE_MIN_STEPS - 1} steps": dict(steps=PROBE_MIN_STEPS - 1),
             "under 12 steps per length": dict(example_lengths=list(range(1, PROBE_MIN_STEPS // 12 + 2)))}
    for words, overrides in cases.items():
        decision = _choose(tiny_bert_dir, **overrides)
        assert decision["chosen"] == "graph" and not decision.xla and words in decision["reason"], decision
    assert not cache_in.exists()


def test_auto_probes_in_a_child_process_once_then_reads_the_cache(tiny_bert_dir, cache_in, monkeypatch):
    """The real probe (tiny BERT, batch 4 x 16): both steps timed, the XLA compilation measured; cached by machine
    and workload; the next run with the same workload reads the cache, another batch size probes again."""
    first = _choose(tiny_bert_dir)
    figures = first["probe"]
    assert figures["graph_step_s"] > 0 and figures["xla_step_s"] > 0
    # the XLA step's first call traces and compiles: far longer than a step (seconds against milliseconds here)
    assert figures["xla_compile_s"] > 5 * figures["xla_step_s"]
    assert first["chosen"] == decide(figures, PROBE_MIN_STEPS, 8)[0] and "measured now" in first["reason"]
    cache = json.loads(cache_in.read_text(encoding="utf-8"))
    [entry] = cache.values()
    assert entry["workload"]["batch_size"] == 4 and entry["workload"]["length"] == 16
    assert entry["machine"]["cpus"] >= 1 and entry["machine"]["tensorflow"] == tf.__version__

    def no_probe(*args, **kwargs):
        raise AssertionError("probed again")

    monkeypatch.setattr(train_step, "probe", no_probe)
    again = _choose(tiny_bert_dir, steps=10 * PROBE_MIN_STEPS)  # a longer run: same figures, its own estimate
    assert again["probe"] == figures and "cached in" in again["reason"]
    assert again["steps"] == 10 * PROBE_MIN_STEPS
    with pytest.raises(AssertionError, match="probed again"):
        _choose(tiny_bert_dir, batch_size=8)


def test_a_failed_probe_names_the_command_and_what_to_do(tmp_path):
    with pytest.raises(BertkitError, match=r"(?s)the probe failed \(exit 2.*bertkit.train_step.*--train-step graph"):
        probe(tmp_path / "no-such-bert", 2, 16)


def _args(tmp_path, *extra):
    parser = build_parser("toy", train_file=None, dev_file=None, test_file=None, epochs=1, batch_size=4,
                          max_len=16, lr=1e-3, warmup_ratio=0.0, weight_decay=0.01)
    return parse_args(parser, ["--output-dir", str(tmp_path / "run"), *extra])


def test_trainer_applies_and_records_the_auto_decision(tmp_path, tiny_bert_dir, cache_in, monkeypatch, capsys):
    """The Trainer's default is auto: a short run keeps the graph step; a run long enough, where the probe says XLA
    wins, is compiled with XLA; run_config.json records the decision and its reason either way."""
    from bertkit.encoder import load_encoder

    def build():
        token_ids = tf.keras.Input((None,), dtype="int32", name="token_ids")
        segment_ids = tf.keras.Input((None,), dtype="int32", name="segment_ids")
        hidden = load_encoder(tiny_bert_dir)([token_ids, segment_ids])
        return tf.keras.Model([token_ids, segment_ids], tf.keras.layers.Dense(2)(hidden[:, 0]))

    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    monkeypatch.setattr(train_step, "probe", lambda *args, **kwargs: dict(XLA_WINS))
    for steps, xla in ((PROBE_MIN_STEPS - 1, False), (PROBE_MIN_STEPS, True)):
        args = _args(tmp_path / str(steps), "--bert-dir", str(tiny_bert_dir))
        assert args.train_step == "auto"
        trainer = Trainer(args, "toy", verbose=0)
        model = trainer.compile(build, steps_per_epoch=steps, loss=loss, example_lengths=[8, 8, 12])
        assert bool(model.jit_compile) == xla
        trainer.write_run_config()
        recorded = read_run_config(trainer.output_dir)["train_step"]
        assert recorded["requested"] == "auto" and recorded["chosen"] == ("xla" if xla else "graph")
        assert ("XLA faster over this run" if xla else "a short run") in recorded["reason"]
        # AdamW's XLA update kernels follow the same length rule (XLA_UPDATES_MIN_STEPS is PROBE_MIN_STEPS)
        assert model.optimizer.jit_compile is (xla and _xla_updates_supported())
        updates = read_run_config(trainer.output_dir)["optimizer_updates"]
        assert updates["xla"] is model.optimizer.jit_compile and ("a short run" in updates["reason"]) is not xla
        if xla:  # the whole step compiles and trains
            ids = np.random.default_rng(0).integers(1, 50, size=(4, 8)).astype(np.int32)
            model.train_on_batch([ids, np.zeros_like(ids)], np.array([0, 1, 0, 1]))
        trainer.close()
    # --eval-only trains nothing: no probe, whatever the length of the run it evaluates
    args = _args(tmp_path / "eval", "--bert-dir", str(tiny_bert_dir), "--eval-only", "--checkpoint", str(tmp_path))
    trainer = Trainer(args, "toy", verbose=0)
    monkeypatch.setattr(train_step, "probe", lambda *args, **kwargs: pytest.fail("probed for --eval-only"))
    assert not trainer.compile(build, steps_per_epoch=10 * PROBE_MIN_STEPS, loss=loss, example_lengths=[8]).jit_compile
    assert trainer.extra["train_step"]["reason"] == "--eval-only: no training"
    # nor a line about the optimizer of a run it does not train, however short that run
    capsys.readouterr()
    trainer.compile(build, steps_per_epoch=1, loss=loss, example_lengths=[8])
    assert "plain graph ops" not in capsys.readouterr().err
    trainer.close()


def test_auto_probes_the_first_token_view_where_the_model_holds_it(tmp_path, tiny_bert_dir, cache_in, monkeypatch):
    """A [CLS] classifier on bertkit.encoder.first_token_encoder's view (as the sentiment recipe builds it): the probe
    (the real child process, tiny BERT) trains the view, a workload cached apart from the whole encoder's; a model on
    the whole encoder probes the whole encoder, under the key it always had (no ``last_block``)."""
    from bertkit.encoder import first_token_encoder, load_encoder

    probed = []
    real_probe = train_step.probe

    def recording_probe(*args, **kwargs):
        probed.append(kwargs.get("first_token_only", False))
        return real_probe(*args, **kwargs) if probed[-1] else dict(XLA_WINS)

    monkeypatch.setattr(train_step, "probe", recording_probe)

    def builder(view: bool):
        def build():
            token_ids = tf.keras.Input((None,), dtype="int32", name="token_ids")
            segment_ids = tf.keras.Input((None,), dtype="int32", name="segment_ids")
            encoder = load_encoder(tiny_bert_dir)
            hidden = (first_token_encoder(encoder) if view else encoder)([token_ids, segment_ids])
            return tf.keras.Model([token_ids, segment_ids], tf.keras.layers.Dense(2)(hidden[:, 0]))
        return build

    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for view in (True, False):
        trainer = Trainer(_args(tmp_path / str(view), "--bert-dir", str(tiny_bert_dir)), "toy", verbose=0)
        trainer.compile(builder(view), steps_per_epoch=PROBE_MIN_STEPS, loss=loss, example_lengths=[8, 8, 12])
        assert "measured now" in trainer.extra["train_step"]["reason"]
        trainer.close()
    assert probed == [True, False]
    entries = json.loads(cache_in.read_text(encoding="utf-8")).values()
    assert sorted(entry["workload"].get("last_block", "-") for entry in entries) == ["-", "first_token"]
    [view_entry] = [entry for entry in entries if "last_block" in entry["workload"]]
    assert view_entry["graph_step_s"] > 0 and view_entry["xla_compile_s"] > view_entry["xla_step_s"]


def test_xla_updates_choice_follows_the_run_length():
    """The one rule both trainers (Trainer.compile, the multi-task JointRun) build their AdamW by."""
    short, long = xla_updates_choice(XLA_UPDATES_MIN_STEPS - 1), xla_updates_choice(XLA_UPDATES_MIN_STEPS)
    assert short["xla"] is False and short["reason"].startswith(f"a short run ({XLA_UPDATES_MIN_STEPS - 1} steps")
    assert long["xla"] is _xla_updates_supported()
    assert long["reason"] == (f"{XLA_UPDATES_MIN_STEPS} steps >= {XLA_UPDATES_MIN_STEPS}" if long["xla"]
                              else "XLA is unavailable on this platform")
