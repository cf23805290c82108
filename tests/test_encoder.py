"""bertkit.encoder: validation errors, loading, freezing, dropout, mixed precision and equivalence with the
reference implementation (Hugging Face transformers) on the real default encoder."""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from bertkit.encoder import BertConfig, default_bert_dir, first_token_encoder, load_encoder, validate_bert_dir
from bertkit.errors import CheckpointError, ConfigError
from bertkit.testing import numpy_bert_forward, write_random_checkpoint

REFERENCE = Path(__file__).parent / "data" / "reference_hidden_states.npz"
TOKEN_IDS = np.array([[3, 40, 41, 42, 43, 4, 0, 0], [3, 50, 60, 4, 70, 80, 90, 4]], np.int32)
SEGMENT_IDS = np.array([[0] * 8, [0, 0, 0, 0, 1, 1, 1, 1]], np.int32)


def copy_dir(src, tmp_path) -> Path:
    dst = tmp_path / "bert"
    shutil.copytree(src, dst)
    return dst


def edit_config(bert_dir, **changes):
    path = Path(bert_dir) / "bert_config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    for key, value in changes.items():
        if value is None:
            del config[key]
    path.write_text(json.dumps(config))


# ------------------------------------------------------------------------------------------------------ validation
def test_validate_returns_config_and_paths(tiny_bert_dir):
    cfg = validate_bert_dir(tiny_bert_dir)
    assert isinstance(cfg, BertConfig)
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads) == (2, 32, 2)
    assert cfg.checkpoint_path == Path(tiny_bert_dir) / "bert_model.ckpt"
    assert cfg.vocab_size == len((Path(tiny_bert_dir) / "vocab.txt").read_text().splitlines())
    assert cfg.do_lower_case is True and cfg.hidden_act == "gelu"


def test_validate_missing_dir(tmp_path):
    with pytest.raises(CheckpointError, match=r"nope: no such directory"):
        validate_bert_dir(tmp_path / "nope")
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="not a directory"):
        validate_bert_dir(tmp_path / "file")


@pytest.mark.parametrize(
    "damage, where, message",
    [
        (lambda d: (d / "bert_config.json").unlink(), "bert_config.json", "missing file"),
        (lambda d: (d / "bert_config.json").write_text("{oops"), "bert_config.json", "invalid JSON"),
        (lambda d: edit_config(d, num_attention_heads=None), "bert_config.json", "missing key.*num_attention_heads"),
        (lambda d: edit_config(d, hidden_size="32"), "bert_config.json", "hidden_size must be a positive integer"),
        (lambda d: edit_config(d, num_attention_heads=3), "bert_config.json", "not divisible"),
        (lambda d: edit_config(d, hidden_act="gelu_new"), "bert_config.json", "hidden_act 'gelu_new' is not supp"),
        (lambda d: edit_config(d, vocab_size=999), "vocab.txt", "lines but bert_config.json says vocab_size 999"),
        (lambda d: (d / "vocab.txt").unlink(), "vocab.txt", "missing file"),
        (lambda d: (d / "vocab.txt").write_bytes(b"[PAD]\n\xff\xfe\n"), "vocab.txt", "line 2: not UTF-8"),
        (lambda d: (d / "bert_model.ckpt.index").unlink(), "bert", "no checkpoint"),
        (lambda d: (d / "bert_model.ckpt.index").write_bytes(b"garbage" * 10), "bert_model.ckpt.index", "corrupt"),
        (lambda d: (d / "bert_model.ckpt.data-00000-of-00001").unlink(), "bert", "missing bert_model.ckpt.data"),
        (lambda d: edit_config(d, num_hidden_layers=3), "bert_config.json", "num_hidden_layers is 3 but .* 2 layers"),
        (lambda d: edit_config(d, intermediate_size=48), "bert_model.ckpt.index", "another model shape"),
        (lambda d: edit_config(d, max_position_embeddings=512), "bert_model.ckpt.index", "position_embeddings"),
    ],
    ids=["no-config", "bad-json", "missing-key", "bad-type", "heads", "act", "vocab-size", "no-vocab", "vocab-utf8",
         "no-index", "corrupt-index", "no-data", "layers", "shape", "positions"],
)
def test_validate_reports_path_and_fault(tiny_bert_dir, tmp_path, damage, where, message):
    bert_dir = copy_dir(tiny_bert_dir, tmp_path)
    damage(bert_dir)
    with pytest.raises(CheckpointError, match=message) as info:
        validate_bert_dir(bert_dir)
    assert info.value.path.endswith(where)
    assert str(info.value).startswith(str(bert_dir))
    assert "\n" not in str(info.value)


def test_corrupt_weights_file_gives_checkpoint_error(tiny_bert_dir, tmp_path):
    bert_dir = copy_dir(tiny_bert_dir, tmp_path)
    data = bert_dir / "bert_model.ckpt.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="cannot load weights"):
        load_encoder(bert_dir)


def test_google_layout_without_checkpoint_file_and_moved_dir(tiny_bert_dir, tmp_path):
    bert_dir = copy_dir(tiny_bert_dir, tmp_path)
    (bert_dir / "checkpoint").unlink()  # Google's zips have no `checkpoint` file
    moved = bert_dir.rename(tmp_path / "moved")
    assert validate_bert_dir(moved).checkpoint_path == moved / "bert_model.ckpt"


# --------------------------------------------------------------------------------------------------------- loading
def test_load_encoder_matches_numpy_bert_for_any_length(tiny_bert_dir):
    encoder = load_encoder(tiny_bert_dir, name="my_encoder")
    assert encoder.name == "my_encoder"
    expected = numpy_bert_forward(tiny_bert_dir, TOKEN_IDS, SEGMENT_IDS)
    out = encoder.predict([TOKEN_IDS, SEGMENT_IDS], verbose=0)
    assert out.shape == (2, 8, 32)
    mask = TOKEN_IDS != 0
    np.testing.assert_allclose(out[mask], expected[mask], atol=1e-4)
    # Dynamic length: the same model takes a longer batch, and padding does not change the real positions.
    longer = encoder.predict([np.pad(TOKEN_IDS, [(0, 0), (0, 5)]), np.pad(SEGMENT_IDS, [(0, 0), (0, 5)])], verbose=0)
    assert longer.shape == (2, 13, 32)
    np.testing.assert_allclose(longer[:, :8][mask], out[mask], atol=1e-5)


def test_hidden_act_selects_tanh_or_exact_gelu(tmp_path):
    tanh_dir = write_random_checkpoint(tmp_path / "tanh", hidden_act="gelu", seed=3, init_std=0.5)
    exact_dir = write_random_checkpoint(tmp_path / "exact", hidden_act="gelu_exact", seed=3, init_std=0.5)
    outputs = {}
    for name, bert_dir in (("tanh", tanh_dir), ("exact", exact_dir)):
        outputs[name] = load_encoder(bert_dir).predict([TOKEN_IDS, SEGMENT_IDS], verbose=0)
        expected = numpy_bert_forward(bert_dir, TOKEN_IDS, SEGMENT_IDS)
        np.testing.assert_allclose(outputs[name][TOKEN_IDS != 0], expected[TOKEN_IDS != 0], atol=1e-4)
    assert np.abs(outputs["tanh"] - outputs["exact"]).max() > 3e-4  # same weights, only the GELU differs


@pytest.mark.parametrize("k", [None, 0, 1, 2])
def test_trainable_layers_freezes_embeddings_and_lower_blocks(tiny_bert_dir, k):
    encoder = load_encoder(tiny_bert_dir, trainable_layers=k)
    trainable = {w.name.split("/")[0] for w in encoder.trainable_weights}
    all_layers = {w.name.split("/")[0] for w in encoder.weights}
    if k is None:
        assert trainable == all_layers
    else:
        top = {name for name in all_layers if any(name.startswith(f"Encoder-{i}-") for i in range(3 - k, 3))}
        assert trainable == top
        assert not any(name.startswith("Embedding-") for name in trainable)
    if k == 1:
        assert trainable == {"Encoder-2-MultiHeadSelfAttention", "Encoder-2-MultiHeadSelfAttention-Norm",
                             "Encoder-2-FeedForward", "Encoder-2-FeedForward-Norm"}


@pytest.mark.parametrize("k", [-1, 3, 1.5, True])
def test_trainable_layers_out_of_range(tiny_bert_dir, k):
    with pytest.raises(ConfigError, match="trainable_layers must be an integer from 0 to 2"):
        load_encoder(tiny_bert_dir, trainable_layers=k)


def test_frozen_encoder_weights_do_not_change_in_training(tiny_bert_dir):
    encoder = load_encoder(tiny_bert_dir, trainable_layers=1, dropout=0.0)
    token_ids = tf.keras.Input((None,), dtype="int32")
    segment_ids = tf.keras.Input((None,), dtype="int32")
    logits = tf.keras.layers.Dense(2)(encoder([token_ids, segment_ids])[:, 0])
    model = tf.keras.Model([token_ids, segment_ids], logits)
    model.compile(tf.keras.optimizers.Adam(1e-2), tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = {w.name: w.numpy().copy() for w in encoder.weights}
    model.fit([TOKEN_IDS, SEGMENT_IDS], np.array([0, 1]), epochs=2, verbose=0)
    changed = {name for name, value in before.items()
               if not np.array_equal(value, encoder.get_layer(name.split("/")[0]).weights[0].numpy())
               and name.endswith(("gamma:0", "embeddings:0", "_Wq:0", "_W1:0"))}
    assert changed and all(name.startswith("Encoder-2-") for name in changed)


def test_dropout_option(tiny_bert_dir):
    inputs = [TOKEN_IDS, SEGMENT_IDS]
    deterministic = load_encoder(tiny_bert_dir, dropout=0.0)
    np.testing.assert_allclose(deterministic(inputs, training=True).numpy(), deterministic(inputs).numpy(), atol=1e-6)
    default = load_encoder(tiny_bert_dir)  # the config's hidden_dropout_prob (0.1)
    assert np.abs(default(inputs, training=True).numpy() - default(inputs).numpy()).max() > 1e-3
    with pytest.raises(ConfigError, match="dropout"):
        load_encoder(tiny_bert_dir, dropout=1.5)


def attention_dropout_rates(encoder) -> set:
    return {layer.attention_dropout for layer in encoder.layers if layer.name.endswith("-MultiHeadSelfAttention")}


def test_attention_dropout_follows_config_and_options(tiny_bert_dir, tmp_path):
    assert attention_dropout_rates(load_encoder(tiny_bert_dir)) == {0.1}  # the config's attention_probs_dropout_prob
    assert attention_dropout_rates(load_encoder(tiny_bert_dir, dropout=0.0)) == {0.0}  # dropout: both rates
    assert attention_dropout_rates(load_encoder(tiny_bert_dir, dropout=0.0, attention_dropout=0.3)) == {0.3}
    inputs = [TOKEN_IDS, SEGMENT_IDS]
    attention_only = load_encoder(tiny_bert_dir, dropout=0.0, attention_dropout=0.3)
    assert np.abs(attention_only(inputs, training=True).numpy() - attention_only(inputs).numpy()).max() > 1e-3
    with pytest.raises(ConfigError, match="attention_dropout"):
        load_encoder(tiny_bert_dir, attention_dropout=-0.1)
    bert_dir = copy_dir(tiny_bert_dir, tmp_path)
    edit_config(bert_dir, attention_probs_dropout_prob=1.5)
    with pytest.raises(ConfigError, match="bert_config.json: attention_probs_dropout_prob 1.5"):
        load_encoder(bert_dir)
    edit_config(bert_dir, attention_probs_dropout_prob=None)  # absent: BERT's 0.1
    assert attention_dropout_rates(load_encoder(bert_dir)) == {0.1}


# ---------------------------------------------------------------------------------------- the [CLS]-only view
def cls_classifier(encoder, name="classifier"):
    """[CLS] -> Dense(2) logits on ``encoder`` (named ``encoder`` inside), as the sentiment recipe's model."""
    token_ids = tf.keras.Input((None,), dtype="int32", name="token_ids")
    segment_ids = tf.keras.Input((None,), dtype="int32", name="segment_ids")
    hidden = encoder([token_ids, segment_ids])
    logits = tf.keras.layers.Dense(2, name="logits", kernel_initializer=tf.keras.initializers.GlorotUniform(seed=1))(
        hidden[:, 0])
    return tf.keras.Model([token_ids, segment_ids], logits, name=name)


def test_first_token_encoder_gives_the_cls_state_of_the_same_weights(tiny_bert_dir):
    encoder = load_encoder(tiny_bert_dir)
    view = first_token_encoder(encoder)
    assert view.name == "encoder" and view.output_shape == (None, 1, 32)
    assert len(view.weights) == len(encoder.weights)
    assert all(a is b for a, b in zip(view.weights, encoder.weights))  # the same variables, in the same order
    inputs = [np.pad(TOKEN_IDS, [(0, 0), (0, 3)]), np.pad(SEGMENT_IDS, [(0, 0), (0, 3)])]  # padded rows
    full = encoder(inputs).numpy()
    first = view(inputs).numpy()
    assert first.shape == (2, 1, 32)
    np.testing.assert_allclose(first, full[:, :1], atol=1e-6)
    assert np.abs(full[:, 1:] - full[:, :1]).max() > 1e-2  # the other positions differ: position 0 was compared
    # a second view of the same encoder (two [CLS] tasks on one shared encoder) computes the same
    np.testing.assert_allclose(first_token_encoder(encoder, name="second")(inputs).numpy(), first, atol=1e-6)
    # idempotent, and anything that is not keras-bert's blocks (an int8 encoder) is left as it is
    assert first_token_encoder(view) is view
    other = tf.keras.layers.Dense(3, name="encoder")
    assert first_token_encoder(other) is other


def test_first_token_encoder_trains_with_the_same_gradients(tiny_bert_dir):
    """Nothing of the last block but [CLS] reaches a [CLS] head: the gradients of every weight are the same
    (dropout off, so both see the same function)."""
    encoder = load_encoder(tiny_bert_dir, dropout=0.0)
    models = {"full": cls_classifier(encoder), "first": cls_classifier(first_token_encoder(encoder))}
    models["first"].get_layer("logits").set_weights(models["full"].get_layer("logits").get_weights())
    labels = tf.constant([0, 1])
    gradients = {}
    for name, model in models.items():
        with tf.GradientTape() as tape:
            logits = model([TOKEN_IDS, SEGMENT_IDS], training=True)
            loss = tf.keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        gradients[name] = tape.gradient(loss, model.trainable_weights)
    assert [w.name for w in models["full"].trainable_weights] == [w.name for w in models["first"].trainable_weights]
    for full, first, weight in zip(gradients["full"], gradients["first"], models["full"].trainable_weights):
        full, first = tf.convert_to_tensor(full).numpy(), tf.convert_to_tensor(first).numpy()
        np.testing.assert_allclose(first, full, rtol=1e-5, atol=1e-6, err_msg=weight.name)  # float rounding
    query_kernel = next(g for g, w in zip(gradients["first"], models["first"].trainable_weights)
                        if w.name.startswith("Encoder-2-MultiHeadSelfAttention/") and "Wq" in w.name)
    assert np.abs(query_kernel.numpy()).max() > 0  # the last block is trained through the view


def test_weights_saved_on_the_full_encoder_load_into_the_view(tiny_bert_dir, tmp_path):
    """A run saved before the view (the model held the whole encoder) loads into a model built on the view, and
    the other way round: the same weights by layer, in the same order."""
    from bertkit.training import load_weights, save_weights

    full = cls_classifier(load_encoder(tiny_bert_dir))
    full.get_layer("logits").set_weights([np.full((32, 2), 0.3, np.float32), np.array([0.1, -0.1], np.float32)])
    for layer in full.get_layer("encoder").layers:  # weights unlike the checkpoint's, so loading has to work
        layer.set_weights([w * 1.5 for w in layer.get_weights()])
    save_weights(full, tmp_path / "full")
    view = cls_classifier(first_token_encoder(load_encoder(tiny_bert_dir)))
    load_weights(view, tmp_path / "full")
    inputs = [TOKEN_IDS, SEGMENT_IDS]
    np.testing.assert_allclose(view(inputs).numpy(), full(inputs).numpy(), atol=1e-5)
    save_weights(view, tmp_path / "view")
    again = cls_classifier(load_encoder(tiny_bert_dir))
    load_weights(again, tmp_path / "view")
    np.testing.assert_allclose(again(inputs).numpy(), full(inputs).numpy(), atol=1e-5)


@pytest.fixture
def mixed_policy():
    yield tf.keras.mixed_precision.set_global_policy
    tf.keras.mixed_precision.set_global_policy("float32")


def test_mixed_precision_matches_float32(tiny_bert_dir, mixed_policy):
    full = load_encoder(tiny_bert_dir).predict([TOKEN_IDS, SEGMENT_IDS], verbose=0)
    mixed_policy("mixed_float16")
    half = load_encoder(tiny_bert_dir).predict([TOKEN_IDS, SEGMENT_IDS], verbose=0)
    assert half.dtype == np.float16
    np.testing.assert_allclose(half.astype(np.float32), full, atol=1e-2)
    mixed_policy("mixed_bfloat16")  # 8-bit mantissa: coarser, but it must build and run
    bf16 = load_encoder(tiny_bert_dir).predict([TOKEN_IDS, SEGMENT_IDS], verbose=0)
    np.testing.assert_allclose(np.asarray(bf16, np.float32), full, atol=1e-1)


def test_build_leaves_keras_transformer_and_keras_bert_untouched(tiny_bert_dir):
    import keras_bert.layers
    import keras_bert.layers.embedding as embedding
    import keras_multi_head
    import keras_transformer.transformer as transformer

    load_encoder(tiny_bert_dir)
    assert transformer.MultiHeadAttention is keras_multi_head.MultiHeadAttention
    assert embedding.TokenEmbedding is keras_bert.layers.TokenEmbedding


def test_token_embedding_computes_no_pass_over_the_whole_table(tiny_bert_dir):
    """keras-bert's TokenEmbedding also returns its table plus 0, for a masked-LM head bertkit never builds: a read
    and an add over the whole vocabulary in every step and prediction. bertkit's layer looks up and masks alike."""
    import keras_bert.layers

    from bertkit.layers import LookupTokenEmbedding

    encoder = load_encoder(tiny_bert_dir)
    layer = encoder.get_layer("Embedding-Token")
    assert isinstance(layer, LookupTokenEmbedding) and isinstance(layer, keras_bert.layers.TokenEmbedding)
    table = layer.embeddings.shape.as_list()
    predict = tf.function(lambda ids, segments: encoder([ids, segments], training=False))
    graph = predict.get_concrete_function(tf.TensorSpec([None, None], tf.int32),
                                          tf.TensorSpec([None, None], tf.int32)).graph
    whole_table = [op.type for op in graph.get_operations() if op.type != "ReadVariableOp"
                   and any(output.shape.as_list() == table for output in op.outputs)]
    assert whole_table == [], whole_table  # the ResourceGather's output is (batch, length, hidden)
    # The lookup and the mask are keras-bert's layer's, on the same weights.
    original = keras_bert.layers.TokenEmbedding(input_dim=table[0], output_dim=table[1], mask_zero=True)
    original.build((None, None))
    original.set_weights(layer.get_weights())
    ids = tf.constant(TOKEN_IDS)
    np.testing.assert_array_equal(layer(ids)[0].numpy(), original(ids)[0].numpy())
    np.testing.assert_array_equal(layer.compute_mask(ids)[0].numpy(), original.compute_mask(ids)[0].numpy())
    assert layer.compute_mask(ids)[1] is None


# ------------------------------------------------------------------------------------------------ default encoder
def test_default_bert_dir_converts_once_into_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BERTKIT_CACHE", str(tmp_path / "cache"))
    first = default_bert_dir()
    assert first == tmp_path / "cache" / "all-MiniLM-L6-v2"
    cfg = validate_bert_dir(first)
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.vocab_size) == (6, 384, 30522)
    assert cfg.hidden_act == "gelu_exact" and cfg.do_lower_case is True
    stamp = (first / "bert_model.ckpt.index").stat().st_mtime_ns
    assert default_bert_dir() == first
    assert (first / "bert_model.ckpt.index").stat().st_mtime_ns == stamp  # reused, not rewritten
    (first / "bertkit_conversion.json").unlink()  # an incomplete/foreign dir is converted again
    assert default_bert_dir() == first and (first / "bertkit_conversion.json").is_file()
    assert not [p for p in first.parent.iterdir() if p.name.startswith(".all-MiniLM-L6-v2.tmp")]


@pytest.fixture(scope="module")
def reference():
    data = np.load(REFERENCE)
    return {key: data[key] for key in data.files}


def test_reference_file_is_small_and_covers_pairs_and_padding(reference):
    assert REFERENCE.stat().st_size < 1_000_000
    assert reference["hidden"].shape[:2] == reference["token_ids"].shape
    lengths = reference["mask"].sum(1)
    assert len(set(lengths)) == len(lengths) and lengths.min() < reference["token_ids"].shape[1]  # padding
    assert reference["segment_ids"].max() == 1  # a text pair


def test_default_encoder_matches_reference_implementation(default_bert_dir, reference, tmp_path):
    inputs = [reference["token_ids"], reference["segment_ids"]]
    mask = reference["mask"].astype(bool)
    hidden = load_encoder(default_bert_dir).predict(inputs, verbose=0)
    assert np.abs(hidden - reference["hidden"])[mask].max() < 1e-4
    # The same weights read with keras-bert's tanh "gelu" are measurably off: the comparison can fail.
    tanh_dir = tmp_path / "tanh"
    tanh_dir.mkdir()
    for path in Path(default_bert_dir).iterdir():
        os.symlink(path, tanh_dir / path.name)
    (tanh_dir / "bert_config.json").unlink()
    config = json.loads((Path(default_bert_dir) / "bert_config.json").read_text())
    (tanh_dir / "bert_config.json").write_text(json.dumps({**config, "hidden_act": "gelu"}))
    tanh_hidden = load_encoder(tanh_dir).predict(inputs, verbose=0)
    assert np.abs(tanh_hidden - reference["hidden"])[mask].max() > 1e-3
