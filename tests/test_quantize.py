"""bertkit.quantize: the int8 (and the float32) TensorFlow Lite export of a run's encoder, on a tiny random run of
each recipe.

How close int8 should be (the tolerance used below): dynamic-range quantization rounds every weight to one of 255
steps of its output channel's range and every activation row, inside each matrix product, to one of 256 steps of
that row's range, i.e. relative errors of a few tenths of a percent per product. Through the tiny encoder's two
blocks (six products each; the layer norms rescale) the hidden states stay within about 1 % of their largest
magnitude (measured on such runs: 0.4-0.5 %). The tests allow 5 %, ten times that: a weight tensor left out or
mis-scaled, a head layer left at its initial values, or ids and segments swapped, are off by far more (or fail),
and the error must also be non-zero (else the float32 model, not the int8 one, was compared).

The float32 export is the same graph in float32 on another runtime: only the order of float additions differs, so
its hidden states must match Keras's within FLOAT32_TOLERANCE (1e-5 of the largest magnitude; measured 1e-7-1e-6 on
the tiny runs and 6e-6 on MiniLM-L6), 5,000 times tighter than int8's bound, and its decoded predictions must be
Keras's exactly.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from bertkit import quantize
from bertkit.batching import predict_in_length_order
from bertkit.errors import CheckpointError, ConfigError
from bertkit.quantize import (DEFAULT_EXPORT, DEFAULT_EXPORTS, TFLiteModel, export_int8, export_tflite, load_int8_run,
                              load_tflite_run, read_metadata)
from bertkit.recipe import load_run

RELATIVE_TOLERANCE = 0.05  # of the float32 output's largest magnitude; see the module docstring
FLOAT32_TOLERANCE = 1e-5  # the float32 export's, likewise
RECIPES = ("relation_extract", "sentiment", "sequence_labeling", "span_extract")
# Positions the encoder gives: every one, or (the sentiment recipe's [CLS] pooling, bertkit.encoder's
# first_token_encoder) the first alone
FIRST_POSITION_ONLY = {"sentiment"}


class Exported:
    def __init__(self, name: str, run_dir: Path, data: Path):
        self.name, self.run_dir, self.data = name, run_dir, data
        self.tflite = run_dir / DEFAULT_EXPORT


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def relative_error(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.abs(got - want).max() / np.abs(want).max())


@pytest.fixture(scope="module")
def export_of(tmp_path_factory, tiny_recipe_run):
    """``export_of(recipe)``: a copy of the session's tiny run of the recipe (conftest.py: one epoch on a tiny
    random BERT; relation_extract's thresholds at 0.1 so it emits triples), exported to int8 by the command line;
    made once per module and recipe."""
    made = {}

    def make(name: str) -> Exported:
        if name not in made:
            tiny = tiny_recipe_run(name)
            run_dir = tmp_path_factory.mktemp(f"int8_{name}") / "run"
            shutil.copytree(tiny.run_dir, run_dir)
            assert quantize.main([str(run_dir)]) == 0
            made[name] = Exported(name, run_dir, tiny.data)
        return made[name]

    return make


@pytest.fixture(params=RECIPES)
def exported(request, export_of) -> Exported:
    return export_of(request.param)


# ------------------------------------------------------------------------------------------------ the export itself
def test_export_holds_int8_weights_and_describes_its_interface(exported):
    metadata = read_metadata(exported.tflite)
    assert [(i["name"], i["dtype"], i["shape"]) for i in metadata["inputs"]] == [
        ("token_ids", "int32", [-1, -1]), ("segment_ids", "int32", [-1, -1])]
    positions = 1 if exported.name in FIRST_POSITION_ONLY else -1
    assert [(o["name"], o["shape"]) for o in metadata["outputs"]] == [("hidden", [-1, positions, 32])]
    # 2 blocks x 6 matrix products (Q, K, V, output, two feed-forward) at least, all int8
    assert metadata["int8_tensors"] >= 12
    # builtin ops only: the file runs on LiteRT's interpreter, which applies no flex kernel by itself beside TF 2.21
    assert metadata["select_tf_ops"] == []
    assert not [op for op in metadata["ops"] if op.startswith("Flex") or op == "DELEGATE"]
    assert metadata["run"]["task"] == exported.name
    assert (exported.tflite.parent / metadata["head_weights"]["file"]).is_file()


def padded_batch(lengths: list[int], rng) -> list[np.ndarray]:
    """``[token_ids, segment_ids]`` of random rows of these lengths, padded with 0; text b from position 4 on."""
    token_ids = np.zeros((len(lengths), max(lengths)), np.int32)
    for row, n in enumerate(lengths):
        token_ids[row, :n] = rng.integers(6, 200, n)
    segment_ids = ((np.arange(max(lengths)) >= 4) & (token_ids != 0)).astype(np.int32)
    return [token_ids, segment_ids]


def test_int8_encoder_is_close_to_keras_on_variable_lengths(exported):
    encoder = load_run(exported.run_dir).model.get_layer("encoder")
    int8 = TFLiteModel(exported.tflite)
    # LiteRT's interpreter: TensorFlow 2.15's own runs int8 at a quarter of float32's speed (bertkit.quantize.litert)
    assert type(int8.interpreter).__module__ == "ai_edge_litert.interpreter"
    rng = np.random.default_rng(0)
    short, long = padded_batch([9, 6, 2], rng), padded_batch([17, 11], rng)
    outputs = []
    for token_ids, segment_ids in (short, long, short):  # the interpreter is resized, then resized back
        want = encoder.predict_on_batch([token_ids, segment_ids])
        got = int8.predict_on_batch({"token_ids": token_ids, "segment_ids": segment_ids})
        positions = 1 if exported.name in FIRST_POSITION_ONLY else token_ids.shape[1]
        assert got.shape == want.shape == (len(token_ids), positions, 32)
        real = token_ids[:, :positions] != 0
        assert 0 < relative_error(got[real], want[real]) <= RELATIVE_TOLERANCE
        np.testing.assert_array_equal(int8.predict_on_batch([token_ids, segment_ids]), got)  # a list: the same
        outputs.append(got)
    np.testing.assert_array_equal(outputs[2], outputs[0])  # back to the first shapes: the same numbers


def fully_connected_weights(blob: bytes) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(scales, dequantized weights)`` of every int8 fully connected weight matrix of a TensorFlow Lite model."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(blob))
    graph, found = model.subgraphs[0], []
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if max(code.builtinCode, code.deprecatedBuiltinCode) != schema.BuiltinOperator.FULLY_CONNECTED:
            continue
        tensor = graph.tensors[op.inputs[1]]
        if tensor.type == schema.TensorType.INT8:
            data = np.asarray(model.buffers[tensor.buffer].data, np.uint8).view(np.int8).reshape(tensor.shape)
            scales = np.asarray(tensor.quantization.scale, np.float32)
            found.append((scales, data.astype(np.float32) * (scales[:, None] if len(scales) > 1 else scales)))
    return found


def test_fully_connected_weights_are_int8_with_a_scale_per_output_channel(export_of):
    """Every int8 matrix of the encoder has one scale per output row (TensorFlow 2.15's converter writes one per
    matrix; per_channel_weights requantizes), and each row is its float32 kernel's row rounded to 1/127 of that
    row's largest magnitude."""
    exported = export_of("sentiment")
    kernels = [w.numpy().T for w in load_run(exported.run_dir).model.get_layer("encoder").weights
               if len(w.shape) == 2]
    matrices = fully_connected_weights(exported.tflite.read_bytes())
    assert len(matrices) >= 12  # 2 blocks x 6 products
    assert read_metadata(exported.tflite)["fully_connected_weights"]["per_tensor"] == 0
    for scales, weights in matrices:
        assert scales.shape == (weights.shape[0],)
        source = min((k for k in kernels if k.shape == weights.shape), key=lambda k: np.abs(k - weights).max())
        np.testing.assert_allclose(scales, np.abs(source).max(axis=1) / 127, rtol=1e-6)
        assert (np.abs(source - weights).max(axis=1) <= 0.5 * scales * 1.001).all()


def outlier_dense():
    """A Dense layer (64 x 96) whose kernel has one weight 50 times the others' scale, converted with ONE scale
    per matrix (what TensorFlow 2.15 writes; 2.21 writes per channel unless told not to): ``(model, blob)``."""
    import tensorflow as tf

    rng = np.random.default_rng(3)
    kernel = rng.normal(0, 0.02, (64, 96)).astype(np.float32)
    kernel[5, 7] = 1.0
    features = tf.keras.Input((64,), name="features")
    dense = tf.keras.layers.Dense(96, name="dense", kernel_initializer=tf.constant_initializer(kernel))
    model = tf.keras.Model(features, dense(features))
    concrete = tf.function(lambda x: model(x), input_signature=[tf.TensorSpec([None, 64], tf.float32)])
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete.get_concrete_function()], model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter._experimental_disable_per_channel = True  # noqa: SLF001 (one scale per matrix, on both stacks)
    return model, converter.convert()


def test_per_channel_weights_requantizes_a_one_scale_matrix_from_its_float_source():
    model, blob = outlier_dense()
    [(scales, before)] = fully_connected_weights(blob)
    assert scales.shape == (1,)
    kernel = model.get_layer("dense").kernel.numpy()
    # no float source among the variables given (only another matrix of the same shape): left as it is
    unchanged, counts = quantize.per_channel_weights(blob, [np.ones_like(kernel)])
    assert unchanged == blob and counts == {"per_channel": 0, "per_tensor": 1, "requantized": 0}
    requantized, counts = quantize.per_channel_weights(blob, [np.ones_like(kernel), kernel, np.zeros(3)])
    assert counts == {"per_channel": 1, "per_tensor": 0, "requantized": 1}
    [(scales, after)] = fully_connected_weights(requantized)
    assert scales.shape == (96,)
    rows = np.ones(96, bool)
    rows[7] = False  # every row but the outlier's: steps of 1.0 / 127 before, of the row's own max (~0.05) / 127 now
    error_before = np.abs(before - kernel.T)[rows].max()
    error_after = np.abs(after - kernel.T)[rows].max()
    assert error_after < error_before / 10
    # ... and LiteRT's interpreter computes with the new scales: its outputs move as close to float32
    x = np.random.default_rng(4).normal(size=(8, 64)).astype(np.float32)
    x[:, 5] = 0.0  # no input through the outlier weight: what is left is the other weights' rounding
    want = model.predict_on_batch(x)[:, rows]

    def output_error(model_bytes):
        runner = quantize.litert().Interpreter(model_content=model_bytes, num_threads=1).get_signature_runner()
        [output] = runner(**{next(iter(runner.get_input_details())): x}).values()
        return np.abs(output[:, rows] - want).max()

    assert output_error(requantized) < output_error(blob) / 5


def test_int8_encoder_calls_the_interpreter_per_tokens_per_invoke_with_the_same_numbers(export_of):
    tflite = export_of("sentiment").tflite
    whole = quantize.tflite_encoder(tflite, tokens_per_invoke=10_000)
    split = quantize.tflite_encoder(tflite, tokens_per_invoke=40)  # 17 tokens a row: 2 rows a call
    calls = []
    predict_on_batch = split.model.predict_on_batch
    split.model.predict_on_batch = lambda inputs: calls.append(len(inputs["token_ids"])) or predict_on_batch(inputs)
    inputs = padded_batch([9, 6, 2, 17, 11], np.random.default_rng(5))
    np.testing.assert_allclose(split(inputs).numpy(), whole(inputs).numpy(), rtol=0, atol=1e-5)
    assert calls == [2, 2, 1]
    with pytest.raises(ConfigError, match="tokens_per_invoke must be at least 1"):
        quantize.tflite_encoder(tflite, tokens_per_invoke=0)


# ------------------------------------------------------------------------------------- predictions through the recipe
def check_sentiment(examples, fp32, int8, _fp32_run, _int8_run):
    labels = set(_fp32_run.head["labels"])
    for a, b in zip(fp32, int8):
        assert b["label"] in labels
        assert max(abs(a["probabilities"][k] - b["probabilities"][k]) for k in labels) <= RELATIVE_TOLERANCE
        if max(a["probabilities"].values()) - min(a["probabilities"].values()) > 0.1:
            assert b["label"] == a["label"]


def check_sequence_labeling(examples, fp32, int8, fp32_run, int8_run):
    from recipes.sequence_labeling import task

    # the emission scores the CRF decodes, from both models on the same windows
    rows, _ = task.make_features(fp32_run.tokenizer, [s.tokens for s in examples], fp32_run.head["max_len"])

    def scores(model):
        return predict_in_length_order(lambda batch: model(batch, training=False).numpy(), rows, 8,
                                       input_keys=task.MODEL_KEYS)

    for want, got, row in zip(scores(fp32_run.model), scores(int8_run.model), rows):
        words = len(row["word_index"])
        assert 0 < relative_error(got[:words], want[:words]) <= RELATIVE_TOLERANCE
    tags_a = [t for p in fp32 for t in p["tags"]]
    tags_b = [t for p in int8 for t in p["tags"]]
    assert len(tags_a) == len(tags_b) and np.mean(np.array(tags_a) == np.array(tags_b)) >= 0.9
    entities = [(p["text"], e) for p in int8 for e in p["entities"]]
    assert entities and all(text[e["start"]:e["end"]] == e["text"] for text, e in entities)


def check_span_extract(examples, fp32, int8, _fp32_run, _int8_run):
    assert all(a.get("id") == b.get("id") for a, b in zip(fp32, int8))
    assert any(b["answer"] for b in int8)
    for example, a, b in zip(examples, fp32, int8):
        assert example.context[b["answer_start"]:b["answer_end"]] == b["answer"]
    same = [(a, b) for a, b in zip(fp32, int8) if a["answer_start"] == b["answer_start"]
            and a["answer_end"] == b["answer_end"]]
    assert len(same) >= len(fp32) / 2
    assert all(abs(a["score"] - b["score"]) <= RELATIVE_TOLERANCE * max(abs(a["score"]), 1.0) for a, b in same)


def check_relation_extract(examples, fp32, int8, fp32_run, int8_run):
    from recipes.relation_extract import task

    # the cascade's first stage (subject start/end probabilities) from both models on one padded batch
    encoded = fp32_run.tokenizer.encode_batch([e.text for e in examples], max_len=fp32_run.head["max_len"])
    batch = {key: encoded[key] for key in ("token_ids", "segment_ids")}
    want = task.inference_stages(fp32_run.model)[0].predict_on_batch(batch)
    got = task.inference_stages(int8_run.model)[0].predict_on_batch(batch)
    real = batch["token_ids"] != 0
    for w, g in zip(want[1:], got[1:]):
        assert np.abs(g - w)[real].max() <= RELATIVE_TOLERANCE  # probabilities: absolute
    triples = [(p["text"], t) for p in int8 for t in p["spo_list"]]
    assert triples
    for text, t in triples:
        assert text[t["subject_start"]:t["subject_end"]] == t["subject"]
        assert text[t["object_start"]:t["object_end"]] == t["object"]


CHECKS = {"sentiment": check_sentiment, "sequence_labeling": check_sequence_labeling,
          "span_extract": check_span_extract, "relation_extract": check_relation_extract}


def test_int8_run_predicts_through_the_recipe_with_offsets(exported):
    fp32_run, int8_run = load_run(exported.run_dir), load_int8_run(exported.run_dir)
    encoder = int8_run.model.get_layer("encoder")
    assert isinstance(encoder.model, TFLiteModel)
    # the Keras layer that stands in for the encoder: same hidden states (within int8 error) and mask
    import tensorflow as tf

    batch = [tf.constant(x) for x in padded_batch([7, 3], np.random.default_rng(1))]
    fp32_encoder = fp32_run.model.get_layer("encoder")
    positions = 1 if exported.name in FIRST_POSITION_ONLY else None
    real = batch[0].numpy()[:, :positions] != 0
    assert 0 < relative_error(encoder(batch).numpy()[real], fp32_encoder(batch).numpy()[real]) <= RELATIVE_TOLERANCE
    np.testing.assert_array_equal(encoder.compute_mask(batch), fp32_encoder.compute_mask(batch, None))
    head_layers = [layer for layer in int8_run.model.layers if layer is not encoder and layer.weights]
    assert head_layers
    for layer in head_layers:  # the run's trained head, not freshly initialised layers
        for got, want in zip(layer.get_weights(), fp32_run.model.get_layer(layer.name).get_weights()):
            np.testing.assert_array_equal(got, want)
    examples = fp32_run.recipe.read_examples(exported.data, fp32_run.args)
    fp32 = fp32_run.predict_examples(examples, batch_size=4)
    int8 = int8_run.predict_examples(examples, batch_size=4)
    assert len(int8) == len(examples)
    CHECKS[exported.name](examples, fp32, int8, fp32_run, int8_run)
    assert fp32_run.recipe.HEADLINE in fp32_run.recipe.score(examples, int8, int8_run.head)


# ------------------------------------------------------------------------------------------------ the float32 export
@pytest.fixture(scope="module")
def float32_export_of(export_of):
    """``float32_export_of(recipe)``: the float32 export, by the command line, of the run ``export_of`` made."""
    made = {}

    def make(name: str) -> Exported:
        if name not in made:
            exported = export_of(name)
            assert quantize.main([str(exported.run_dir), "--precision", "float32"]) == 0
            exported.float32 = exported.run_dir / DEFAULT_EXPORTS["float32"]
            made[name] = exported
        return made[name]

    return make


def same_predictions(got, want, path="") -> None:
    """Equal decoded outputs: every string, label, offset and list length the same; floats (probabilities, scores)
    within 1e-4."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and list(got) == list(want), path
        for key in want:
            same_predictions(got[key], want[key], f"{path}.{key}")
    elif isinstance(want, (list, tuple)):
        assert isinstance(got, (list, tuple)) and len(got) == len(want), path
        for i, (g, w) in enumerate(zip(got, want)):
            same_predictions(g, w, f"{path}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, abs=1e-4), path
    else:
        assert got == want, path


@pytest.mark.parametrize("name", RECIPES)
def test_float32_export_is_the_keras_model_within_float_rounding(float32_export_of, name):
    exported = float32_export_of(name)
    metadata = read_metadata(exported.float32)
    assert exported.float32.parent.name == "export_float32"
    assert (metadata["precision"], metadata["int8_tensors"], metadata["fully_connected_weights"]) == (
        "float32", 0, None)
    assert metadata["quantization"].startswith("none") and metadata["select_tf_ops"] == []
    assert read_metadata(exported.tflite)["precision"] == "int8"  # the int8 export beside it is untouched
    fp32_run = load_run(exported.run_dir)
    lite_run = load_tflite_run(exported.run_dir, precision="float32")
    assert lite_run.precision == "float32"
    encoder, fp32_encoder = lite_run.model.get_layer("encoder"), fp32_run.model.get_layer("encoder")
    positions = 1 if name in FIRST_POSITION_ONLY else None
    for lengths in ([9, 6, 2], [17, 11]):
        batch = padded_batch(lengths, np.random.default_rng(len(lengths)))
        real = batch[0][:, :positions] != 0
        error = relative_error(encoder(batch).numpy()[real], fp32_encoder(batch).numpy()[real])
        assert error <= FLOAT32_TOLERANCE
    examples = fp32_run.recipe.read_examples(exported.data, fp32_run.args)
    same_predictions(lite_run.predict_examples(examples, batch_size=4),
                     fp32_run.predict_examples(examples, batch_size=4))


def test_an_export_is_loaded_as_its_own_precision(float32_export_of, tmp_path):
    exported = float32_export_of("sentiment")
    with pytest.raises(CheckpointError,
                       match=r"an export of precision float32, not int8 \(load it with precision='float32'\)"):
        load_int8_run(exported.run_dir, exported.float32)
    with pytest.raises(CheckpointError, match="an export of precision int8, not float32"):
        load_tflite_run(exported.run_dir, exported.tflite, precision="float32")
    with pytest.raises(ConfigError, match="precision must be one of int8, float32, not 'float16'"):
        load_tflite_run(exported.run_dir, precision="float16")
    with pytest.raises(ConfigError, match="precision must be one of int8, float32, not 'float16'"):
        quantize.export_tflite_run(exported.run_dir, tmp_path / "x.tflite", precision="float16")
    assert not list(tmp_path.iterdir())  # nothing written, the head weights neither
    # an int8 export described before float32 exports existed (its own format name, no precision) reads as int8
    copy = tmp_path / "old"
    shutil.copytree(exported.tflite.parent, copy)
    description = json.loads(metadata_text(copy / "model.tflite"))
    description["format"] = "bertkit-int8/1"
    del description["precision"]
    quantize.metadata_path(copy / "model.tflite").write_text(json.dumps(description), encoding="utf-8")
    assert read_metadata(copy / "model.tflite")["precision"] == "int8"
    assert load_int8_run(exported.run_dir, copy / "model.tflite").predict(["a fine film"])[0]["label"]


def test_predict_py_serves_a_tflite_export_of_either_precision(float32_export_of, tmp_path, capsys):
    """``predict.py --tflite FILE``: the recipe's predictions through the export (the float32 one: Keras's own; the
    int8 one: labels from the same set), one clear error where it is combined with --export or --checkpoint."""
    from bertkit.fileio import iter_jsonl
    from bertkit.recipe import predict_main

    exported = float32_export_of("sentiment")
    texts = tmp_path / "texts.txt"
    texts.write_text("a gorgeous , witty , seductive movie .\nthe plot is a mess\nfine\n", encoding="utf-8")
    folder = Path(__file__).resolve().parents[1] / "recipes" / "sentiment"

    def predict(*flags) -> list[dict]:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}.jsonl"
        assert predict_main(folder, ["--run-dir", str(exported.run_dir), "--input", str(texts), "--output", str(out),
                                     *flags]) == 0
        return [record for _, record in iter_jsonl(out)]

    keras = predict()
    same_predictions(predict("--tflite", str(exported.float32)), keras)
    int8 = predict("--tflite", str(exported.tflite))
    assert len(int8) == 3 and {p["label"] for p in int8} <= set(load_run(exported.run_dir).head["labels"])
    capsys.readouterr()
    for extra in (["--export", str(tmp_path / "saved")], ["--checkpoint", str(exported.run_dir / "best")]):
        assert predict_main(folder, ["--run-dir", str(exported.run_dir), "--input", str(texts),
                                     "--tflite", str(exported.float32), *extra]) == 2
        assert capsys.readouterr().err.strip() == ("error: --tflite: serves the export's own weights; it does not go "
                                                   "with --export or --checkpoint")
    assert not (tmp_path / "saved").exists()


# -------------------------------------------------------------------------------------------------- files and errors
def test_export_refuses_to_overwrite_without_the_flag(exported, capsys):
    before = {path.name: sha256(path) for path in exported.tflite.parent.iterdir()}
    assert quantize.main([str(exported.run_dir)]) == 2
    error = capsys.readouterr().err
    assert error.strip() == f"error: {exported.tflite}: exists already; pass --overwrite to replace it"
    assert {path.name: sha256(path) for path in exported.tflite.parent.iterdir()} == before


def test_overwrite_and_out_write_a_working_export(export_of, tmp_path):
    exported = export_of("sentiment")
    out = tmp_path / "elsewhere" / "int8.tflite"
    assert quantize.main([str(exported.run_dir), "--out", str(out)]) == 0
    assert quantize.main([str(exported.run_dir), "--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["int8.head.npz", "int8.json", "int8.tflite"]
    predictor = load_int8_run(exported.run_dir, out)
    assert predictor.predict(["a fine film"])[0]["label"] in predictor.head["labels"]


def test_a_directory_that_is_not_a_run_is_one_clear_error(tmp_path, capsys):
    assert quantize.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path}: no run_config.json: not a trained run directory"
    with pytest.raises(CheckpointError, match="not a trained run directory"):
        load_int8_run(tmp_path)


def test_missing_or_mixed_exports_are_clear_errors(export_of, tmp_path):
    exported = export_of("sentiment")
    with pytest.raises(CheckpointError, match=r"missing.tflite: no such TensorFlow Lite model \(write one with"):
        load_int8_run(exported.run_dir, tmp_path / "missing.tflite")
    copy = tmp_path / "copy"
    shutil.copytree(exported.tflite.parent, copy)
    tampered = bytearray((copy / "model.tflite").read_bytes())
    tampered[-1] ^= 0xFF
    (copy / "model.tflite").write_bytes(bytes(tampered))
    with pytest.raises(CheckpointError, match="does not match model.json"):
        load_int8_run(exported.run_dir, copy / "model.tflite")
    (copy / "model.json").unlink()
    with pytest.raises(CheckpointError, match="model.json: missing"):
        TFLiteModel(copy / "model.tflite")
    with pytest.raises(ConfigError, match="cannot write a SavedModel"):
        load_int8_run(exported.run_dir).export(tmp_path / "saved")


# ----------------------------------------------------------------------------------- TFLiteModel's Keras interface
def toy_model():
    """Dict inputs (a float and an int one), dict outputs: the shapes of the recipes' models, in miniature."""
    import tensorflow as tf

    features = tf.keras.Input((None, 32), name="features")
    mask = tf.keras.Input((None,), dtype="int32", name="mask")
    # 32 x 64 weights: the converter leaves tensors under 1024 elements in float32
    hidden = tf.keras.layers.Dense(64, activation="tanh", name="hidden")(features)
    start = tf.keras.layers.Reshape((-1,), name="start")(tf.keras.layers.Dense(1, name="start_dense")(hidden))
    masked = tf.keras.layers.Lambda(lambda t: t[0] * tf.cast(t[1], tf.float32), name="end")([start, mask])
    return tf.keras.Model({"features": features, "mask": mask}, {"start": start, "end": masked}, name="toy")


def test_tflite_model_takes_and_returns_what_keras_predict_on_batch_does(tmp_path):
    model = toy_model()
    path = export_int8(tmp_path / "toy.tflite", model)
    int8 = TFLiteModel(path, num_threads=1)
    metadata = read_metadata(path)
    assert [i["name"] for i in metadata["inputs"]] == ["features", "mask"]
    assert metadata["output_structure"] == "dict" and metadata["int8_tensors"] >= 1
    rng = np.random.default_rng(1)
    for batch, length in ((2, 5), (4, 3)):
        inputs = {"features": rng.normal(size=(batch, length, 32)).astype(np.float32),
                  "mask": (rng.random((batch, length)) > 0.3).astype(np.int32), "ignored": np.zeros(1)}
        want = model.predict_on_batch({k: inputs[k] for k in ("features", "mask")})
        got = int8.predict_on_batch(inputs)
        assert list(got) == list(want) == ["start", "end"]
        for key in want:
            assert got[key].shape == want[key].shape and 0 < relative_error(got[key], want[key]) <= 0.05
    with pytest.raises(ConfigError, match="inputs lack mask"):
        int8.predict_on_batch({"features": inputs["features"]})
    with pytest.raises(ConfigError, match="1 inputs given, the model takes 2"):
        int8.predict_on_batch(inputs["features"])
    assert json.loads(metadata_text(path))["tflite"] == "toy.tflite"
    float32 = TFLiteModel(export_tflite(tmp_path / "toy32.tflite", model, precision="float32"), num_threads=1)
    assert read_metadata(float32.path)["int8_tensors"] == 0
    got, want = float32.predict_on_batch(inputs), model.predict_on_batch({k: inputs[k] for k in ("features", "mask")})
    assert all(relative_error(got[key], want[key]) <= FLOAT32_TOLERANCE for key in want)


def metadata_text(path: Path) -> str:
    return quantize.metadata_path(path).read_text(encoding="utf-8")


def test_an_op_without_a_builtin_falls_back_to_flex_kernels_and_says_so(tmp_path):
    """A user's model with an op TensorFlow Lite has no builtin for (cumulative product): the export falls back to
    SELECT_TF_OPS and records the op; where the interpreter applies no flex kernels, loading it is one clear error
    (LiteRT's on TF 2.21; beside TF 2.15 it finds TensorFlow's flex delegate and runs the model).
    An op that neither builtins nor flex kernels cover (digamma) is the converter's error naming it, and no file."""
    import tensorflow as tf

    def model_with(function):
        features = tf.keras.Input((64,), name="features")
        hidden = tf.keras.layers.Dense(64, name="dense")(features)  # 4,096 weights: large enough to be quantized
        return tf.keras.Model(features, tf.keras.layers.Lambda(function)(hidden))

    model = model_with(lambda x: tf.math.cumprod(tf.nn.sigmoid(x), axis=1))
    path = export_int8(tmp_path / "flex.tflite", model)
    metadata = read_metadata(path)
    assert metadata["select_tf_ops"] == ["Cumprod"] and metadata["int8_tensors"] >= 1
    inputs = np.random.default_rng(0).normal(size=(3, 64)).astype(np.float32)
    try:
        got = TFLiteModel(path, num_threads=1).predict_on_batch(inputs)
    except ConfigError as error:  # an interpreter without flex kernels
        assert "needs TensorFlow's flex kernels for Cumprod" in str(error)
    else:
        assert 0 < relative_error(got, model.predict_on_batch(inputs)) <= RELATIVE_TOLERANCE
    with pytest.raises(Exception, match="Digamma"):
        export_int8(tmp_path / "none.tflite", model_with(tf.math.digamma))
    assert not (tmp_path / "none.tflite").exists()
