"""Helpers for fast tests: a tiny random BERT checkpoint in Google format, written in about a second."""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np

__all__ = ["SPECIAL_TOKENS", "default_vocab_tokens", "write_random_checkpoint", "numpy_bert_forward",
           "serve_in_fresh_process", "serve_signatures_in_fresh_process", "check_shared_encoder"]

SPECIAL_TOKENS = ["[PAD]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

_WORDS = """
the a an and or but not no yes is are was were be been being it its this that these those there here i you he she
we they me him her us them my your his our their what which who whom when where why how all any some one two three
of to in on at by for with from as into about over after before under between up down out off again than then so
very too just only also more most less much many such own same other new old good great bad best worst well better
worse nice fine poor awful terrible wonderful excellent boring funny fun love loved like liked hate hated enjoy movie
movies film films story plot actor actors acting director scene scenes music time year years day days man men woman
women people world life work city country company john mary paris london new york berlin google apple university
say said make made go went see saw know knew think get got come came take took give gave find found tell told do did
does done have has had can could will would should may might must shall born lives lived works worked founded
located president capital member part team game play played win won lost high low big small long short first last
next week month today yesterday tomorrow morning night home house school book books word words name names question
answer text sentence data model test train example
""".split()

_SUFFIXES = ["##s", "##es", "##ed", "##ing", "##ly", "##er", "##est", "##ion", "##ness", "##ment", "##ful", "##less",
             "##able", "##y", "##n", "##t", "##'s"]

# Common CJK characters (and a few place/organisation characters) so Chinese text is not all [UNK].
_CJK = ("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起"
        "还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现分将外但身些与高意进把法此实回二理美点月明其种声"
        "北京上海南广州深圳香港台湾中华人民共和国政府大学银行公司市省区东西")


def default_vocab_tokens() -> list[str]:
    """A small English WordPiece vocabulary: the special tokens (``[PAD]`` = 0, ``[unused1]``, ``[UNK]``, ``[CLS]``,
    ``[SEP]``, ``[MASK]``), ASCII punctuation, digits and lowercase letters (whole and ``##``), common words,
    suffix pieces and some CJK characters. Any lowercase ASCII text tokenizes without ``[UNK]``."""
    pieces = list(string.punctuation) + list(string.digits) + list(string.ascii_lowercase)
    pieces += ["##" + c for c in string.digits + string.ascii_lowercase]
    pieces += _WORDS + _SUFFIXES + list(_CJK)
    tokens = list(SPECIAL_TOKENS)
    seen = set(tokens)
    for piece in pieces:
        if piece not in seen:
            seen.add(piece)
            tokens.append(piece)
    return tokens


def write_random_checkpoint(out_dir, *, vocab_tokens=None, layers: int = 2, hidden: int = 32, heads: int = 2,
                            intermediate: int = 64, max_position: int = 128, hidden_act: str = "gelu",
                            seed: int = 0, init_std: float = 0.05) -> Path:
    """Write a tiny random BERT in Google format (``bert_config.json``, ``bert_model.ckpt.*``, ``checkpoint``,
    ``vocab.txt``) into ``out_dir`` and return it. Same arguments, same weights. Includes the pooler so the
    directory looks like a released checkpoint; ``hidden_act`` is written as given (``"gelu"`` = tanh, keras-bert's
    reading; ``"gelu_exact"`` = erf). ``init_std`` is the weights' standard deviation (larger values make the
    activations, and so the difference between the two GELUs, larger)."""
    from bertkit.convert import write_google_checkpoint
    from bertkit.fileio import atomic_dir

    if hidden % heads:
        raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
    tokens = list(vocab_tokens) if vocab_tokens is not None else default_vocab_tokens()
    if not tokens or tokens[0] != "[PAD]":
        raise ValueError("vocab_tokens must start with [PAD] (id 0 is padding)")
    rng = np.random.default_rng(seed)
    std = float(init_std)

    def normal(*shape):
        return rng.normal(0.0, std, size=shape).astype(np.float32)

    def norm(prefix):
        return {f"{prefix}/gamma": (1.0 + normal(hidden)).astype(np.float32), f"{prefix}/beta": normal(hidden)}

    variables = {
        "bert/embeddings/word_embeddings": normal(len(tokens), hidden),
        "bert/embeddings/position_embeddings": normal(max_position, hidden),
        "bert/embeddings/token_type_embeddings": normal(2, hidden),
        **norm("bert/embeddings/LayerNorm"),
        "bert/pooler/dense/kernel": normal(hidden, hidden),
        "bert/pooler/dense/bias": normal(hidden),
    }
    for i in range(layers):
        layer = f"bert/encoder/layer_{i}"
        for name, shape in (("attention/self/query", (hidden, hidden)), ("attention/self/key", (hidden, hidden)),
                            ("attention/self/value", (hidden, hidden)), ("attention/output/dense", (hidden, hidden)),
                            ("intermediate/dense", (hidden, intermediate)), ("output/dense", (intermediate, hidden))):
            variables[f"{layer}/{name}/kernel"] = normal(*shape)
            variables[f"{layer}/{name}/bias"] = normal(shape[1])
        variables.update(norm(f"{layer}/attention/output/LayerNorm"))
        variables.update(norm(f"{layer}/output/LayerNorm"))
    config = {
        "attention_probs_dropout_prob": 0.1,
        "do_lower_case": True,
        "hidden_act": hidden_act,
        "hidden_dropout_prob": 0.1,
        "hidden_size": hidden,
        "initializer_range": std,
        "intermediate_size": intermediate,
        "max_position_embeddings": max_position,
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "type_vocab_size": 2,
        "vocab_size": len(tokens),
    }
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        write_google_checkpoint(tmp, variables, config, tokens)
    return out_dir


def numpy_bert_forward(bert_dir, token_ids, segment_ids) -> np.ndarray:
    """Last hidden states of a Google-format BERT computed with plain numpy from the checkpoint variables: an
    implementation independent of keras-bert, for tests (float64; padding = ``token_ids == 0``)."""
    import json
    import math

    import tensorflow as tf

    bert_dir = Path(bert_dir)
    config = json.loads((bert_dir / "bert_config.json").read_text(encoding="utf-8"))
    prefix = str(bert_dir / "bert_model.ckpt")

    def var(name):
        return tf.train.load_variable(prefix, name).astype(np.float64)

    def layer_norm(x, prefix_name, eps=1e-12):
        mean = x.mean(-1, keepdims=True)
        var_ = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var_ + eps) * var(prefix_name + "/gamma") + var(prefix_name + "/beta")

    erf = np.frompyfunc(math.erf, 1, 1)
    activations = {
        "gelu_exact": lambda x: 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)).astype(np.float64)),
        "gelu": lambda x: 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3))),
        "relu": lambda x: np.maximum(x, 0.0),
    }
    act = activations[config["hidden_act"]]
    token_ids, segment_ids = np.asarray(token_ids), np.asarray(segment_ids)
    batch, length = token_ids.shape
    heads = config["num_attention_heads"]
    x = (var("bert/embeddings/word_embeddings")[token_ids] + var("bert/embeddings/token_type_embeddings")[segment_ids]
         + var("bert/embeddings/position_embeddings")[:length][None])
    x = layer_norm(x, "bert/embeddings/LayerNorm")
    key_bias = np.where(token_ids != 0, 0.0, -10000.0)[:, None, None, :]
    for i in range(config["num_hidden_layers"]):
        name = f"bert/encoder/layer_{i}"

        def dense(h, part):
            return h @ var(f"{name}/{part}/kernel") + var(f"{name}/{part}/bias")

        def split(h):
            return h.reshape(batch, length, heads, -1).transpose(0, 2, 1, 3)

        q, k, v = (split(dense(x, f"attention/self/{p}")) for p in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(q.shape[-1]) + key_bias
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        context = (weights @ v).transpose(0, 2, 1, 3).reshape(batch, length, -1)
        x = layer_norm(x + dense(context, "attention/output/dense"), f"{name}/attention/output/LayerNorm")
        x = layer_norm(x + dense(act(dense(x, "intermediate/dense")), "output/dense"), f"{name}/output/LayerNorm")
    return x


def serve_in_fresh_process(export_dir, inputs: dict | list, *, signature: str = "serving_default") -> dict:
    """Run a SavedModel's ``signature`` in a fresh interpreter that imports only TensorFlow and tensorflow-text
    (never bertkit), as a server would: ``inputs`` maps argument names to lists of strings (a plain list is
    ``texts``). Returns each output as a nested list, strings decoded. For tests of every recipe's export."""
    return serve_signatures_in_fresh_process(export_dir, {signature: inputs})[signature]


def serve_signatures_in_fresh_process(export_dir, calls: dict) -> dict:
    """:func:`serve_in_fresh_process` for several signatures of one SavedModel, loaded once in one fresh process
    (starting TensorFlow and loading the model take most of such a call): ``calls`` maps each signature name to its
    ``inputs``; returns signature name -> outputs."""
    import json
    import os
    import subprocess
    import sys

    calls = {name: {"texts": inputs} if isinstance(inputs, list) else inputs for name, inputs in calls.items()}
    script = ("import json, sys, tensorflow as tf, tensorflow_text\n"
              "signatures = tf.saved_model.load(sys.argv[1]).signatures\n"
              "decode = lambda v: [decode(x) for x in v] if isinstance(v, list) else v.decode()\n"
              "served = {}\n"
              "for name, inputs in json.loads(sys.argv[2]).items():\n"
              "    out = signatures[name](**{k: tf.constant(v) for k, v in inputs.items()})\n"
              "    served[name] = {k: decode(v.numpy().tolist()) if v.dtype == tf.string else v.numpy().tolist()"
              " for k, v in out.items()}\n"
              "assert 'bertkit' not in sys.modules\n"
              "print(json.dumps(served))\n")
    result = subprocess.run([sys.executable, "-c", script, str(export_dir), json.dumps(calls)],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": ""})
    if result.returncode != 0:
        raise AssertionError(f"serving {export_dir} in a fresh process failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_shared_encoder(build_model, bert_dir, head: dict, inputs: dict) -> list:
    """Assert what a multi-task trainer relies on in a recipe's ``build_model(..., encoder=)``: two models built on
    one ``load_encoder`` instance hold its variables and both see a change to one of them, while a model built
    without ``encoder`` has an encoder of its own. ``inputs`` is one batch of the model's inputs (tensors). Returns
    the three models (two sharing, one own) for further recipe-specific checks."""
    import tensorflow as tf

    from bertkit.encoder import load_encoder

    encoder = load_encoder(bert_dir)
    first, second = (build_model(bert_dir, head, encoder=encoder) for _ in range(2))
    own = build_model(bert_dir, head)
    shared = {id(v) for v in encoder.variables}
    assert shared <= {id(v) for v in first.variables} and shared <= {id(v) for v in second.variables}
    assert not shared & {id(v) for v in own.variables}

    def outputs(model):
        return np.concatenate([np.asarray(x).ravel() for x in tf.nest.flatten(model(inputs, training=False))])

    before = [outputs(m) for m in (second, own)]
    embeddings = next(v for v in first.variables if "Embedding-Token" in v.name)
    embeddings.assign_add(np.random.default_rng(0).normal(size=embeddings.shape).astype(np.float32))
    after = [outputs(m) for m in (second, own)]
    assert not np.allclose(before[0], after[0]), "a change to the shared encoder did not reach the second model"
    assert np.array_equal(before[1], after[1]), "a model built without encoder= shares the other models' encoder"
    return [first, second, own]
