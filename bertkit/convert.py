"""Hugging Face BERT (``config.json`` + ``model.safetensors`` + ``vocab.txt``) -> Google BERT checkpoint directory.

The result is the layout of Google's released checkpoints (``bert_config.json``, ``bert_model.ckpt.{index,data-*}``,
``checkpoint``, ``vocab.txt``) with Google's variable names, so it loads through
``keras_bert.load_trained_model_from_checkpoint`` exactly like ``uncased_L-12_H-768_A-12`` does. Weights are read
with safetensors' numpy API (no torch) and written with TensorFlow's ``SaveV2`` op under those names.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from bertkit.errors import CheckpointError
from bertkit.fileio import atomic_dir, atomic_write_json, atomic_write_text

__all__ = [
    "CHECKPOINT_PREFIX",
    "MANIFEST_NAME",
    "convert_safetensors_to_google",
    "hf_to_google_name",
    "hf_config_to_google",
    "write_google_checkpoint",
]

CHECKPOINT_PREFIX = "bert_model.ckpt"
MANIFEST_NAME = "bertkit_conversion.json"  # written last: its presence means the directory is complete
FORMAT_VERSION = 1

# Hugging Face "hidden_act" -> the name keras-bert / bertkit reads. keras-bert takes "gelu" as the tanh
# approximation (Google's convention), so HF's exact erf GELU gets a name of its own.
_ACTIVATIONS = {
    "gelu": "gelu_exact",
    "gelu_new": "gelu",
    "gelu_pytorch_tanh": "gelu",
    "gelu_fast": "gelu",
    "relu": "relu",
    "tanh": "tanh",
    "silu": "swish",
    "swish": "swish",
}

_CONFIG_KEYS = (
    "attention_probs_dropout_prob",
    "hidden_dropout_prob",
    "hidden_size",
    "initializer_range",
    "intermediate_size",
    "max_position_embeddings",
    "num_attention_heads",
    "num_hidden_layers",
    "type_vocab_size",
    "vocab_size",
)

# Tensors of HF BERT exports that a Google BERT checkpoint has no place for (buffers, tied weights).
_IGNORED = re.compile(r"(^|\.)position_ids$|^cls\.predictions\.decoder\.weight$")


def _log(message: str) -> None:
    print(f"[bertkit.convert] {message}", file=sys.stderr, flush=True)


def hf_to_google_name(name: str) -> tuple[str, bool] | None:
    """Map one Hugging Face BERT tensor name to ``(google_name, transpose)``; ``None`` for a tensor Google BERT does
    not have. Torch ``Linear`` weights are ``(out, in)``; TF kernels are ``(in, out)``, hence ``transpose``."""
    if _IGNORED.search(name):
        return None
    if name.startswith("bert."):
        name = name[len("bert."):]
    parts = name.split(".")
    leaf = parts[-1]
    path = parts[:-1]
    if name.startswith("cls.predictions.bias"):
        return "cls/predictions/output_bias", False
    if name == "cls.seq_relationship.weight":
        return "cls/seq_relationship/output_weights", False  # Google stores it (2, hidden) like torch
    if name == "cls.seq_relationship.bias":
        return "cls/seq_relationship/output_bias", False
    if path[:1] == ["embeddings"] and len(path) == 2 and path[1].endswith("_embeddings") and leaf == "weight":
        return f"bert/embeddings/{path[1]}", False
    if path[:1] == ["encoder"] and len(path) >= 3 and path[1] == "layer":
        path = ["encoder", f"layer_{path[2]}", *path[3:]]
    elif path[:1] not in (["embeddings"], ["pooler"], ["cls"]):
        return None
    if path[-1] == "LayerNorm":
        google_leaf = {"weight": "gamma", "gamma": "gamma", "bias": "beta", "beta": "beta"}.get(leaf)
        if google_leaf is None:
            return None
        prefix = "" if path[0] == "cls" else "bert/"
        return prefix + "/".join(path + [google_leaf]), False
    if leaf == "weight":
        return ("" if path[0] == "cls" else "bert/") + "/".join(path + ["kernel"]), True
    if leaf == "bias":
        return ("" if path[0] == "cls" else "bert/") + "/".join(path + ["bias"]), False
    return None


def hf_config_to_google(hf_config: dict, *, do_lower_case: bool, source: Path) -> dict:
    """The ``bert_config.json`` of a converted model (Google's keys, bertkit's activation names)."""
    missing = [key for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                               "vocab_size", "max_position_embeddings") if key not in hf_config]
    if missing:
        raise CheckpointError(source, f"config has no {', '.join(missing)}")
    if hf_config.get("model_type", "bert") != "bert":
        raise CheckpointError(source, f"model_type is {hf_config['model_type']!r}; only BERT models convert")
    act = hf_config.get("hidden_act", "gelu")
    if act not in _ACTIVATIONS:
        raise CheckpointError(source, f"hidden_act {act!r} is not supported (known: {', '.join(_ACTIVATIONS)})")
    if hf_config.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(source, "only absolute position embeddings are supported")
    config = {key: hf_config[key] for key in _CONFIG_KEYS if key in hf_config}
    config.setdefault("type_vocab_size", 2)
    config["hidden_act"] = _ACTIVATIONS[act]
    config["do_lower_case"] = bool(do_lower_case)
    return dict(sorted(config.items()))


def write_google_checkpoint(out_dir, variables: dict[str, np.ndarray], config: dict, vocab_tokens: list[str]) -> Path:
    """Write a Google-format BERT directory into ``out_dir`` (which must exist): ``bert_config.json``,
    ``vocab.txt``, ``bert_model.ckpt.index``/``.data-00000-of-00001`` and a ``checkpoint`` file with relative
    paths (so the directory can be moved). Not atomic by itself: callers write into an ``atomic_dir``."""
    import tensorflow as tf

    out_dir = Path(out_dir)
    names = sorted(variables)
    tensors = [tf.constant(np.ascontiguousarray(variables[name])) for name in names]
    # SaveV2 writes exactly these names (tf.train.Checkpoint would write object-graph names instead).
    tf.raw_ops.SaveV2(prefix=str(out_dir / CHECKPOINT_PREFIX), tensor_names=names,
                      shape_and_slices=[""] * len(names), tensors=tensors)
    atomic_write_text(out_dir / "checkpoint",
                      f'model_checkpoint_path: "{CHECKPOINT_PREFIX}"\n'
                      f'all_model_checkpoint_paths: "{CHECKPOINT_PREFIX}"\n')
    atomic_write_json(out_dir / "bert_config.json", config)
    atomic_write_text(out_dir / "vocab.txt", "".join(token + "\n" for token in vocab_tokens))
    return out_dir


def _make_world_readable_like_mkdir(path: Path) -> None:
    """Temporary dirs are created 0700; the cache directory should get the permissions ``mkdir`` would give it."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o777 & ~umask)


def _read_do_lower_case(model_dir: Path) -> bool:
    """Casing from the HF tokenizer config; uncased when it says nothing (true of the English BERTs it ships)."""
    path = model_dir / "tokenizer_config.json"
    if path.is_file():
        try:
            value = json.loads(path.read_text(encoding="utf-8")).get("do_lower_case")
        except (ValueError, UnicodeDecodeError) as exc:
            raise CheckpointError(path, f"invalid JSON: {exc}") from None
        if value is not None:
            return bool(value)
    return True


def _read_vocab(path: Path) -> list[str]:
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise CheckpointError(path, "missing file") from None
    except UnicodeDecodeError as exc:
        raise CheckpointError(path, f"not UTF-8 (byte {exc.start})") from None
    tokens = text.split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    return [token.rstrip("\r") for token in tokens]


def convert_safetensors_to_google(model_dir, out_dir, *, manifest: dict | None = None) -> Path:
    """Convert a Hugging Face BERT directory (``config.json``, ``model.safetensors``, ``vocab.txt``, optionally
    ``tokenizer_config.json``) into a Google BERT checkpoint directory at ``out_dir``, atomically (the directory
    appears complete or not at all; an existing one is replaced). ``hidden_act`` ``"gelu"`` (HF: exact erf)
    becomes ``"gelu_exact"``. Returns ``out_dir``."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    model_dir, out_dir = Path(model_dir), Path(out_dir)
    config_path, weights_path, vocab_path = (model_dir / n for n in ("config.json", "model.safetensors", "vocab.txt"))
    if not model_dir.is_dir():
        raise CheckpointError(model_dir, "no such directory")
    for path in (config_path, weights_path, vocab_path):
        if not path.is_file():
            raise CheckpointError(path, "missing file")
    try:
        hf_config = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(config_path, f"invalid JSON: {exc}") from None
    config = hf_config_to_google(hf_config, do_lower_case=_read_do_lower_case(model_dir), source=config_path)
    vocab = _read_vocab(vocab_path)
    if len(vocab) != config["vocab_size"]:
        raise CheckpointError(vocab_path, f"{len(vocab)} tokens but config.json says vocab_size {config['vocab_size']}")

    start = time.perf_counter()
    _log(f"reading {weights_path} ({weights_path.stat().st_size / 2**20:.0f} MiB)")
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(weights_path, f"cannot read safetensors: {exc}") from None
    variables, skipped = {}, []
    for hf_name, value in tensors.items():
        mapped = hf_to_google_name(hf_name)
        if mapped is None:
            skipped.append(hf_name)
            continue
        google_name, transpose = mapped
        variables[google_name] = (value.T if transpose else value).astype(np.float32)
    required = ["bert/embeddings/word_embeddings", "bert/embeddings/position_embeddings",
                "bert/embeddings/token_type_embeddings", "bert/embeddings/LayerNorm/gamma"]
    required += [f"bert/encoder/layer_{i}/output/LayerNorm/beta" for i in range(config["num_hidden_layers"])]
    missing = [name for name in required if name not in variables]
    if missing:
        raise CheckpointError(weights_path, f"no tensor for {missing[0]} (is this a BERT model?)")
    kept = [name for name in skipped if not _IGNORED.search(name)]
    if kept:
        _log(f"not converted (no Google BERT equivalent): {', '.join(sorted(kept))}")

    _log(f"writing {len(variables)} variables to {out_dir}")
    with atomic_dir(out_dir) as tmp:
        _make_world_readable_like_mkdir(tmp)
        write_google_checkpoint(tmp, variables, config, vocab)
        atomic_write_json(tmp / MANIFEST_NAME, {
            "format": FORMAT_VERSION,
            "source": str(model_dir),
            "source_weights_bytes": weights_path.stat().st_size,
            **(manifest or {}),
        })
    _log(f"converted in {time.perf_counter() - start:.1f} s")
    return out_dir
