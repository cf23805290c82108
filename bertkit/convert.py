"""Hugging Face BERT folder -> Google BERT checkpoint directory.

A Hugging Face BERT folder holds ``config.json``, the weights as ``model.safetensors`` or ``pytorch_model.bin``
(torch's zip format), and the WordPiece vocabulary as ``vocab.txt`` or only inside ``tokenizer.json``
(``tokenizer_config.json`` and the ``tokenizer.json`` normalizer give the casing). The result is the layout of
Google's released checkpoints (``bert_config.json``, ``bert_model.ckpt.{index,data-*}``, ``checkpoint``,
``vocab.txt``) with Google's variable names, so it loads through ``keras_bert.load_trained_model_from_checkpoint``
exactly like ``uncased_L-12_H-768_A-12`` does.

Weights are read without torch: safetensors through its numpy API, ``pytorch_model.bin`` through
:mod:`bertkit.torch_pickle` (a restricted unpickler that rebuilds tensors only). They are written with
TensorFlow's ``SaveV2`` op under Google's names. Every source file is read once; the SHA-256 of exactly the bytes
converted is recorded in the output's manifest (``bertkit_conversion.json``, written last), which is what
:mod:`bertkit.encoder`'s cache compares against the source to decide whether a conversion is still current.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bertkit.errors import CheckpointError
from bertkit.fileio import atomic_dir, atomic_write_json, atomic_write_text

__all__ = [
    "CHECKPOINT_PREFIX",
    "MANIFEST_NAME",
    "FORMAT_VERSION",
    "HFSource",
    "find_hf_source",
    "hf_source_digest",
    "convert_hf_to_google",
    "convert_safetensors_to_google",
    "hf_to_google_name",
    "hf_config_to_google",
    "read_tokenizer_json",
    "write_google_checkpoint",
]

CHECKPOINT_PREFIX = "bert_model.ckpt"
MANIFEST_NAME = "bertkit_conversion.json"  # written last: its presence means the directory is complete
# Part of every source digest: a change to what the converter writes makes old conversions stale.
FORMAT_VERSION = 2

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")  # in order of preference when a folder has both

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


# --------------------------------------------------------------------------------------------------- names, config
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
    """The ``bert_config.json`` of a converted model (Google's keys, bertkit's activation names). Raises
    :class:`CheckpointError` naming ``source`` for a model that is not a BERT keras-bert can build."""
    if not isinstance(hf_config, dict):
        raise CheckpointError(source, "expected a JSON object")
    if hf_config.get("model_type", "bert") != "bert":
        raise CheckpointError(source, f"model_type is {hf_config['model_type']!r}; only BERT models convert "
                                      f"(other architectures differ in embeddings, position offsets or layers)")
    missing = [key for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                               "vocab_size", "max_position_embeddings") if key not in hf_config]
    if missing:
        raise CheckpointError(source, f"config has no {', '.join(missing)}")
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size",
                "max_position_embeddings"):
        value = hf_config[key]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise CheckpointError(source, f"{key} must be a positive integer, got {value!r}")
    act = hf_config.get("hidden_act", "gelu")
    if not isinstance(act, str) or act not in _ACTIVATIONS:
        raise CheckpointError(source, f"hidden_act {act!r} is not supported (known: {', '.join(_ACTIVATIONS)})")
    if hf_config.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(source, "only absolute position embeddings are supported")
    if hf_config.get("type_vocab_size", 2) != 2:
        raise CheckpointError(source, f"type_vocab_size is {hf_config['type_vocab_size']!r}; keras-bert supports 2")
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


# ---------------------------------------------------------------------------------------------- the source folder
@dataclass(frozen=True)
class HFSource:
    """The files of a Hugging Face BERT folder that a conversion reads (``None``: absent)."""

    model_dir: Path
    config: Path
    weights: Path
    vocab_txt: Path | None
    tokenizer_json: Path | None
    tokenizer_config: Path | None

    def files(self) -> list[Path]:
        """Every file the conversion reads, in a fixed order (the order of the digest)."""
        return [p for p in (self.config, self.weights, self.vocab_txt, self.tokenizer_json, self.tokenizer_config)
                if p is not None]


def find_hf_source(model_dir, *, weights_name: str | None = None) -> HFSource:
    """The files of the Hugging Face BERT folder ``model_dir``: ``config.json``, ``model.safetensors`` (preferred)
    or ``pytorch_model.bin`` (or exactly ``weights_name``), ``vocab.txt`` and/or ``tokenizer.json``, optional
    ``tokenizer_config.json``. A missing directory, config, weights file or vocabulary -> :class:`CheckpointError`."""
    model_dir = Path(model_dir).expanduser()
    if not model_dir.is_dir():
        raise CheckpointError(model_dir, "no such directory" if not model_dir.exists() else "not a directory")
    config = model_dir / "config.json"
    if not config.is_file():
        raise CheckpointError(config, "missing file")
    if weights_name is not None:
        weights = model_dir / weights_name
        if not weights.is_file():
            raise CheckpointError(weights, "missing file")
    else:
        found = [model_dir / name for name in WEIGHT_FILES if (model_dir / name).is_file()]
        if not found:
            raise CheckpointError(model_dir, f"no weights: expected {' or '.join(WEIGHT_FILES)} (sharded or "
                                             f"TF/Flax weights are not supported)")
        weights = found[0]

    def optional(name: str) -> Path | None:
        path = model_dir / name
        return path if path.is_file() else None

    vocab_txt, tokenizer_json = optional("vocab.txt"), optional("tokenizer.json")
    if vocab_txt is None and tokenizer_json is None:
        raise CheckpointError(model_dir / "vocab.txt", "missing file (and no tokenizer.json to read the vocabulary "
                                                       "from)")
    return HFSource(model_dir, config, weights, vocab_txt, tokenizer_json, optional("tokenizer_config.json"))


def _digest(file_hashes: list[tuple[str, str]]) -> str:
    """The source digest: SHA-256 over the converter's format version and each file's name and SHA-256."""
    outer = hashlib.sha256(f"bertkit-convert/{FORMAT_VERSION}\n".encode())
    for name, file_hash in file_hashes:
        outer.update(f"{name}\t{file_hash}\n".encode())
    return outer.hexdigest()


def hf_source_digest(source: HFSource) -> str:
    """SHA-256 identifying the conversion of ``source``: its files' full contents (and the converter's format
    version). Hashing the contents, not sizes and mtimes, cannot miss a change (a same-size rewrite, a copy that
    keeps mtimes) and costs ~0.1 s for 90 MB of weights, small next to building the model."""
    hashes = []
    for path in source.files():
        try:
            with open(path, "rb") as f:
                hashes.append((path.name, hashlib.file_digest(f, "sha256").hexdigest()))
        except OSError as exc:
            raise CheckpointError(path, f"cannot read: {exc.strerror or exc}") from None
    return _digest(hashes)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(path, "missing file") from None
    except OSError as exc:
        raise CheckpointError(path, f"cannot read: {exc.strerror or exc}") from None


def _parse_json(data: bytes, path: Path) -> dict:
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise CheckpointError(path, f"not UTF-8 (byte {exc.start})") from None
    except ValueError as exc:
        raise CheckpointError(path, f"invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise CheckpointError(path, "expected a JSON object")
    return value


def parse_vocab_txt(data: bytes, path: Path) -> list[str]:
    """The tokens of a ``vocab.txt`` read as bytes, one per line; bad UTF-8 is a CheckpointError naming the line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CheckpointError(path, f"line {line}: not UTF-8") from None
    tokens = text.split("\n")
    if tokens and tokens[-1] == "":
        tokens.pop()
    return [token.rstrip("\r") for token in tokens]


def read_tokenizer_json(tokenizer: dict, path: Path) -> list[str]:
    """The WordPiece vocabulary of a parsed ``tokenizer.json`` as a list in id order (``model.vocab`` plus any
    ``added_tokens``). Raises :class:`CheckpointError` for a tokenizer that is not BERT's WordPiece (another model
    or pre-tokenizer, another continuation prefix or unknown token), ids with gaps or clashes, or a token that
    cannot be a line of ``vocab.txt``."""
    model = tokenizer.get("model")
    if not isinstance(model, dict) or model.get("type") != "WordPiece":
        kind = model.get("type") if isinstance(model, dict) else model
        raise CheckpointError(path, f"model type is {kind!r}, not WordPiece (not a BERT tokenizer)")
    pre = tokenizer.get("pre_tokenizer")
    if not isinstance(pre, dict) or pre.get("type") != "BertPreTokenizer":
        kind = pre.get("type") if isinstance(pre, dict) else pre
        raise CheckpointError(path, f"pre_tokenizer is {kind!r}, not BertPreTokenizer (bertkit's tokenizer splits "
                                    f"words the BERT way only)")
    if model.get("continuing_subword_prefix", "##") != "##" or model.get("unk_token", "[UNK]") != "[UNK]":
        raise CheckpointError(path, "WordPiece must use '##' continuations and the '[UNK]' token")
    vocab = model.get("vocab")
    if not isinstance(vocab, dict) or not vocab:
        raise CheckpointError(path, "model.vocab is missing or empty")
    by_id: dict[int, str] = {}
    entries = list(vocab.items())
    entries += [(t.get("content"), t.get("id")) for t in tokenizer.get("added_tokens") or [] if isinstance(t, dict)]
    for token, index in entries:
        if not isinstance(token, str) or not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise CheckpointError(path, f"bad vocabulary entry {token!r}: {index!r}")
        if by_id.setdefault(index, token) != token:
            raise CheckpointError(path, f"id {index} is both {by_id[index]!r} and {token!r}")
        if not token or "\n" in token or "\r" in token:  # other whitespace is kept, as in Google's vocab files
            raise CheckpointError(path, f"token {token!r} (id {index}) cannot be a line of vocab.txt")
    size = max(by_id) + 1
    if len(by_id) != size:
        gap = next(i for i in range(size) if i not in by_id)
        raise CheckpointError(path, f"vocabulary ids have a gap: no token has id {gap}")
    return [by_id[i] for i in range(size)]


def _tokenizer_casing(tokenizer_config: dict | None, tokenizer: dict | None, source: HFSource) -> bool:
    """``do_lower_case`` of the converted model. Each setting comes from ``tokenizer_config.json`` when it has the
    key (as in transformers' ``BertTokenizer(Fast)``), else from the ``tokenizer.json`` BertNormalizer, else BERT's
    default (uncased). bertkit's tokenizer lowercases and strips accents together and always splits CJK characters,
    so a tokenizer that does one without the other, or does not split CJK, is refused rather than approximated."""
    lowercase = strip_accents = chinese = None
    where = source.tokenizer_config
    if tokenizer_config is not None:
        lowercase = tokenizer_config.get("do_lower_case")
        strip_accents = tokenizer_config.get("strip_accents")
        chinese = tokenizer_config.get("tokenize_chinese_chars")
    normalizer = tokenizer.get("normalizer") if tokenizer is not None else None
    if isinstance(normalizer, dict) and normalizer.get("type") == "BertNormalizer":
        if lowercase is None:
            lowercase, where = normalizer.get("lowercase"), source.tokenizer_json
        if strip_accents is None and (tokenizer_config is None or "strip_accents" not in tokenizer_config):
            strip_accents = normalizer.get("strip_accents")
        if chinese is None:
            chinese = normalizer.get("handle_chinese_chars")
    elif tokenizer is not None and source.vocab_txt is None:
        kind = normalizer.get("type") if isinstance(normalizer, dict) else normalizer
        raise CheckpointError(source.tokenizer_json, f"normalizer is {kind!r}, not BertNormalizer")
    lowercase = True if lowercase is None else bool(lowercase)
    where = where or source.model_dir
    if strip_accents is not None and bool(strip_accents) != lowercase:
        raise CheckpointError(where, f"lowercase={lowercase} with strip_accents={bool(strip_accents)} is not "
                                     f"supported (bertkit's tokenizer lowercases and strips accents together)")
    if chinese is not None and not chinese:
        raise CheckpointError(where, "tokenize_chinese_chars is off; bertkit's tokenizer always splits CJK "
                                     "characters")
    return lowercase


def _load_weights(data: bytes, path: Path) -> dict[str, np.ndarray]:
    if path.name.endswith(".safetensors"):
        from safetensors import SafetensorError
        from safetensors.numpy import load

        try:
            return load(data)
        except (SafetensorError, OSError, ValueError, TypeError) as exc:
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise CheckpointError(path, f"cannot read safetensors (truncated or corrupt?): {message}") from None
    from bertkit.torch_pickle import read_torch_state_dict

    return read_torch_state_dict(data, path)


def _required_shapes(config: dict) -> dict[str, tuple[int, ...]]:
    """Every variable the converted checkpoint must have, with its shape: the encoder's, the position table and
    the pooler (the layout of Google's released checkpoints)."""
    from bertkit.encoder import _expected_shapes  # one definition of the encoder's variables, shared with validation

    h = config["hidden_size"]
    shapes = _expected_shapes(config)
    shapes["bert/embeddings/position_embeddings"] = (config["max_position_embeddings"], h)
    shapes["bert/pooler/dense/kernel"] = (h, h)
    shapes["bert/pooler/dense/bias"] = (h,)
    return shapes


def _google_variables(tensors: dict[str, np.ndarray], config: dict, weights_path: Path,
                      vocab_path: Path) -> dict[str, np.ndarray]:
    """Rename, transpose and cast to float32; check that every required variable is there with its shape."""
    variables, skipped = {}, []
    for hf_name, value in tensors.items():
        mapped = hf_to_google_name(hf_name)
        if mapped is None:
            skipped.append(hf_name)
            continue
        google_name, transpose = mapped
        if google_name in variables:
            raise CheckpointError(weights_path, f"two tensors map to {google_name} (one is {hf_name})")
        if not np.issubdtype(value.dtype, np.floating):
            raise CheckpointError(weights_path, f"{hf_name} has dtype {value.dtype}, expected floating point")
        variables[google_name] = np.ascontiguousarray((value.T if transpose else value).astype(np.float32))
    for name, shape in _required_shapes(config).items():
        if name not in variables:
            raise CheckpointError(weights_path, f"no tensor for {name} (is this a BERT model with its pooler?)")
        if variables[name].shape != shape:
            if name == "bert/embeddings/word_embeddings" and variables[name].shape[1:] == shape[1:]:
                raise CheckpointError(vocab_path, f"{config['vocab_size']} tokens but the word embeddings in "
                                                  f"{weights_path.name} have {variables[name].shape[0]} rows")
            raise CheckpointError(weights_path, f"{name} has shape {variables[name].shape} but config.json implies "
                                                f"{shape}")
    kept = [name for name in skipped if not _IGNORED.search(name)]
    if kept:
        _log(f"not converted (no Google BERT equivalent): {', '.join(sorted(kept))}")
    return variables


# ------------------------------------------------------------------------------------------------------ converting
def convert_hf_to_google(model_dir, out_dir, *, manifest: dict | None = None, expected_digest: str | None = None,
                         weights_name: str | None = None) -> Path:
    """Convert the Hugging Face BERT folder ``model_dir`` (see :func:`find_hf_source`) into a Google BERT
    checkpoint directory at ``out_dir``, atomically: the directory appears complete or not at all, an existing one
    is replaced, and on any error nothing is written. Returns ``out_dir``.

    ``hidden_act`` ``"gelu"`` (HF: exact erf) becomes ``"gelu_exact"``; ``do_lower_case`` comes from the tokenizer
    files. The manifest records ``source_sha256`` (:func:`hf_source_digest` of the bytes actually converted) plus
    ``manifest``'s entries. With ``expected_digest``, a source that no longer has that digest (changed since the
    caller hashed it) is an error instead of a conversion filed under the wrong key.

    Raises :class:`CheckpointError` naming the file and fault for: missing files, invalid JSON, a model that is not
    BERT or has an unsupported activation, a tokenizer bertkit cannot reproduce, a vocabulary whose size is not
    ``vocab_size`` or the word embeddings' rows, a truncated/corrupt weights file, a pickle holding anything but
    tensors, or missing/misshapen tensors (pooler and token-type embeddings included)."""
    source = find_hf_source(model_dir, weights_name=weights_name)
    out_dir = Path(out_dir)
    start = time.perf_counter()
    _log(f"reading {source.model_dir} ({source.weights.name}, {source.weights.stat().st_size / 2**20:.0f} MiB)")
    contents = {path: _read_bytes(path) for path in source.files()}
    digest = _digest([(path.name, hashlib.sha256(data).hexdigest()) for path, data in contents.items()])
    if expected_digest is not None and digest != expected_digest:
        raise CheckpointError(source.model_dir, "its files changed while being converted; run again")

    hf_config = _parse_json(contents[source.config], source.config)
    tokenizer_config = (_parse_json(contents[source.tokenizer_config], source.tokenizer_config)
                        if source.tokenizer_config else None)
    tokenizer = _parse_json(contents[source.tokenizer_json], source.tokenizer_json) if source.tokenizer_json else None
    do_lower_case = _tokenizer_casing(tokenizer_config, tokenizer, source)
    config = hf_config_to_google(hf_config, do_lower_case=do_lower_case, source=source.config)
    if source.vocab_txt is not None:
        vocab_path, vocab = source.vocab_txt, parse_vocab_txt(contents[source.vocab_txt], source.vocab_txt)
    else:
        vocab_path, vocab = source.tokenizer_json, read_tokenizer_json(tokenizer, source.tokenizer_json)
    if len(vocab) != config["vocab_size"]:
        raise CheckpointError(vocab_path, f"{len(vocab)} tokens but config.json says vocab_size {config['vocab_size']}")
    weights_bytes = len(contents[source.weights])
    tensors = _load_weights(contents.pop(source.weights), source.weights)
    variables = _google_variables(tensors, config, source.weights, vocab_path)
    del tensors

    _log(f"writing {len(variables)} variables to {out_dir}")
    with atomic_dir(out_dir) as tmp:
        _make_world_readable_like_mkdir(tmp)
        write_google_checkpoint(tmp, variables, config, vocab)
        atomic_write_json(tmp / MANIFEST_NAME, {
            "format": FORMAT_VERSION,
            "source": str(source.model_dir),
            "source_files": [path.name for path in source.files()],
            "source_sha256": digest,
            "source_weights_bytes": weights_bytes,
            **(manifest or {}),
        })
    _log(f"converted in {time.perf_counter() - start:.1f} s")
    return out_dir


def convert_safetensors_to_google(model_dir, out_dir, *, manifest: dict | None = None) -> Path:
    """:func:`convert_hf_to_google` of a folder whose weights must be ``model.safetensors``."""
    return convert_hf_to_google(model_dir, out_dir, manifest=manifest, weights_name="model.safetensors")
