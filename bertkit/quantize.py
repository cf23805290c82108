"""TensorFlow Lite serving: a run's encoder as a dynamic-range int8 (or a float32) TensorFlow Lite model, for CPU
serving from Python.

    python -m bertkit.quantize RUN_DIR [--precision int8|float32] [--out FILE] [--overwrite]

then ``load_int8_run(RUN_DIR).predict(["some text"])`` gives the recipe's usual decoded outputs (character offsets
into the inputs), computed with the int8 encoder; ``load_tflite_run(RUN_DIR, precision="float32")`` the same with
the float32 one (written to ``RUN_DIR/export_float32/model.tflite``).

Float32 (``--precision float32``): the same conversion without quantization, every weight and activation float32,
run by the same interpreter, whose XNNPack delegate takes the whole float32 graph. Its outputs are Keras's within
float rounding (9e-7 of the largest magnitude on MiniLM-L6's hidden states), its speed at or above TensorFlow's graph
on the same CPU: MiniLM-L6's whole encoder at 64 x 128 on a 2-core Zen 4 (2026-12-05, ``benchmarks/bench_peer.py``),
medians of 65.3 and 60.5 sequences/s in two runs against 56.1 and 59.9; in whole ``predict`` passes over the English
runs' test sets 1.01-1.68x, the encoder alone 1.15-1.38x, the same metrics (``benchmarks/README.md``). For a float32
server that wants none of int8's rounding; int8 is 2-3x faster still.

What is quantized (int8): the ENCODER (``bertkit.encoder.load_encoder``'s model, named ``encoder`` in every recipe's
model: all the matrix products that matter), converted by ``tf.lite.TFLiteConverter`` with
``optimizations=[tf.lite.Optimize.DEFAULT]`` and no representative dataset, i.e. dynamic-range quantization: the
weights of every fully connected layer (and the token embedding table) are stored as int8, the activations stay
float32 and are quantized on the fly (per row) inside each matrix product. Fully connected weights are int8 per
output channel (one scale per row of the weight matrix): TensorFlow 2.21's converter writes them so, 2.15's writes
ONE scale per matrix, which the few large weights of each feed-forward output matrix stretch so far that most
weights keep one or two significant bits. :func:`per_channel_weights` requantizes such matrices per output channel
from the model's own float32 weights (found by value: the one variable every element of which lies within half a
quantization step of the converted matrix). Measured on the English no-flag runs (2026-12-04, MiniLM-L6, CoNLL-2003
test F1, float32 0.8745): one scale per matrix 0.8600 (-1.45 points), per output channel 0.8741 (-0.03), at the same
speed. The embedding table stays one scale per table (its rows are gathered, not multiplied). The recipe's head (a
few Dense layers, the CRF) stays float32 in Keras: its weights are saved beside the ``.tflite`` and the recipe's own
``build_model(bert_dir, head, encoder=...)`` rebuilds the model around a :func:`tflite_encoder` layer, so every
recipe's ``predict`` (``bertkit.batching.batch_predictor(model)``, the tagger's ``decode_batch``, the relation
cascade's two stages) runs unchanged. The export (either precision) is three files: ``model.tflite`` (the encoder),
``model.head.npz`` (the head's float32 weights by layer name) and ``model.json`` (inputs, outputs, the ops it needs,
checksums of the other two).

Interface: the ``.tflite`` takes token ids (``token_ids``, ``segment_ids``: int32, shape ``(batch, seq)``, any batch
and length up to the encoder's ``max_position_embeddings``, padded with 0) and returns ``hidden`` (float32,
``(batch, seq, hidden)``; ``(batch, 1, hidden)``, the ``[CLS]`` position alone, where the run's model holds
``bertkit.encoder.first_token_encoder``'s view, as the sentiment recipe's does with ``[CLS]`` pooling). It does not
take raw strings: the in-graph tokenizer of the SavedModel export (``bertkit.export.InGraphTokenizer``) is built on
tensorflow-text ops, which are not TensorFlow Lite builtins.
Tokenization stays in Python (``bertkit.tokenization.Tokenizer``, the same ids and offsets), which is what
:func:`load_int8_run`'s ``Predictor`` does.

Ops: builtin TensorFlow Lite ops only, so the file runs on any TensorFlow Lite interpreter (LiteRT's, TensorFlow
2.15's and 2.21's own, the C++ and mobile runtimes). The converter falls back to SELECT_TF_OPS (TensorFlow's "flex"
kernels, which LiteRT's Python interpreter applies only where TensorFlow 2.15's flex delegate is loaded beside it)
only for a model with an op that has no builtin; ``model.json`` lists such ops (``select_tf_ops``, empty for every
bertkit encoder: the attention mask is shaped with ``ExpandDims``, since a ``[:, None, None, :]`` strided slice of a
bool tensor has no builtin), and loading such a model where no flex kernel is found is a clear error.

Interpreter: LiteRT's (the ``ai-edge-litert`` package, pinned on both stacks; :func:`litert`), not
``tf.lite.Interpreter``. On TensorFlow 2.15 the latter runs the dynamic-range (hybrid) products on reference-grade
kernels, with XNNPack taking no node of this model: there int8 ran at a quarter to a third of float32's speed
(2026-12-03). LiteRT runs the same file's fully connected layers on its own optimized hybrid kernels (its XNNPack
delegate takes the float partitions in between: 26 delegate nodes for MiniLM-L6, the 36 int8 products stay
LiteRT's): MiniLM-L6 alone at 32 x 128 on a 2-core Zen 4 (2026-12-04) took 640 ms in float32 Keras, 321 ms in int8
on LiteRT and 2,609 ms in int8 on TF 2.15's interpreter; with per-channel weights, calls of
:data:`TOKENS_PER_INVOKE` tokens and the leaner attention of ``bertkit.layers`` (later that day), 189-267 ms
against 577-614 ms in float32. ``benchmarks/bench_int8.py`` measures each recipe's int8
export against its float32 model (benchmarks/README.md); :meth:`TFLiteModel.delegate_nodes` counts what each
delegate took.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import io
import os
import re
import threading
from collections import Counter
from pathlib import Path

import numpy as np

from bertkit.errors import BertkitError, CheckpointError, ConfigError
from bertkit.recipe import Predictor, read_run

__all__ = ["DEFAULT_EXPORT", "DEFAULT_EXPORTS", "ENCODER_INPUTS", "PRECISIONS", "TFLiteModel", "TFLitePredictor",
           "export_encoder", "export_int8", "export_int8_run", "export_tflite", "export_tflite_run", "load_int8_run",
           "load_tflite_run", "main", "metadata_path", "read_metadata", "tflite_encoder"]

FORMAT = "bertkit-tflite/1"
FORMATS_READ = (FORMAT, "bertkit-int8/1")  # the latter: int8 exports written before float32 was offered
PRECISIONS = ("int8", "float32")
DEFAULT_EXPORTS = {precision: Path(f"export_{precision}") / "model.tflite" for precision in PRECISIONS}  # in the run
DEFAULT_EXPORT = DEFAULT_EXPORTS["int8"]
ENCODER_INPUTS = ("token_ids", "segment_ids")
ENCODER_OUTPUT = "hidden"
ENCODER_LAYER = "encoder"  # the name load_encoder gives the encoder, the layer every recipe model holds it as
QUANTIZATION = ("dynamic-range int8 (tf.lite.Optimize.DEFAULT, no representative dataset): int8 weights (fully "
                "connected layers: one scale per output channel), float32 activations quantized on the fly inside "
                "each matrix product")
NO_QUANTIZATION = "none: float32 weights and activations"
# Rows of a batch per interpreter call (at most this many tokens, at least one row): LiteRT runs the int8 encoder
# faster on small calls, whose attention scores stay in cache. MiniLM-L6 int8, 64 sequences in calls of R rows,
# 2-core Zen 4 (2026-12-04): at 128 tokens 114 seq/s for R = 64 or 32, 129 for 16, 138-144 for 1-8; at 384 tokens
# 24.7 (R = 64), 24.4 (32), 26.7 (16), 26.6 (8), 28.2-29.1 (1-4). Float32 Keras gains nothing from it (13.8 seq/s
# at 8 x 384, 15.3 at 64 x 384), so only the TensorFlow Lite encoder splits its batches; float32 on LiteRT gains
# a little (2026-12-05, 64 x 128: 62-64 seq/s in one call, 62-69 in calls of 16 or 8 rows).
TOKENS_PER_INVOKE = 1024


# ------------------------------------------------------------------------------------------------------- file names
def metadata_path(tflite_path) -> Path:
    """``model.tflite`` -> ``model.json``: the description written beside every export."""
    return Path(tflite_path).with_suffix(".json")


def head_weights_path(tflite_path) -> Path:
    """``model.tflite`` -> ``model.head.npz``: the float32 head weights of a run export."""
    return Path(tflite_path).with_suffix(".head.npz")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# -------------------------------------------------------------------------------------------------------- converting
def _input_specs(keras_model):
    """One ``TensorSpec`` per input of a Keras model (its own dtype and shape), named like the input, in the order of
    ``tf.nest.flatten(model.input)`` (sorted keys for a dict of inputs)."""
    import tensorflow as tf

    try:
        inputs = tf.nest.flatten(keras_model.input)
    except (AttributeError, ValueError):
        raise ConfigError(f"export_tflite: model {keras_model.name!r} has no known inputs (a subclassed model that "
                          f"was never called?); pass input_signature=") from None
    return [tf.TensorSpec(t.shape, t.dtype, name=re.sub(r"\W", "_", t.name.split(":")[0]))
            for t in inputs]


def _named_outputs(outputs) -> tuple[str, dict]:
    """``(structure, {name: tensor})`` of a model's outputs: ``tensor`` (one output, named ``output_0``), ``list``
    (``output_0``, ``output_1``, ...) or ``dict`` (its own keys, in its order)."""
    if isinstance(outputs, dict):
        return "dict", dict(outputs)
    if isinstance(outputs, (list, tuple)):
        return "list", {f"output_{i}": tensor for i, tensor in enumerate(outputs)}
    return "tensor", {"output_0": outputs}


def litert():
    """The TensorFlow Lite interpreter module every exported model runs on: LiteRT's (the ``ai-edge-litert`` package,
    ``ai_edge_litert.interpreter``), the interpreter TensorFlow now points to. TensorFlow's own ``tf.lite.Interpreter``
    is deprecated on 2.21, and on 2.15 it runs the dynamic-range products on reference-grade kernels: 2,609 against
    321 ms for MiniLM-L6 at 32 x 128 on a 2-core Zen 4 (2026-12-04), where float32 Keras takes 640 ms."""
    try:
        from ai_edge_litert import interpreter
    except ImportError:
        raise ConfigError("TensorFlow Lite serving needs the LiteRT interpreter: pip install ai-edge-litert (pinned in "
                          "requirements.txt)") from None
    return interpreter


def _converted_ops(blob: bytes) -> tuple[Counter, int]:
    """The op counts of a converted model and how many int8 tensors (the quantized weights) it holds."""
    lite = litert()
    no_delegates = lite.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES  # just listing, not running
    interpreter = lite.Interpreter(model_content=blob, experimental_op_resolver_type=no_delegates)
    ops = Counter(op["op_name"] for op in interpreter._get_ops_details())  # noqa: SLF001 (no public op listing)
    return ops, sum(t["dtype"] == np.int8 for t in interpreter.get_tensor_details())


def _convert(concrete, weights, *, quantize: bool) -> bytes:
    """TensorFlow Lite of one concrete function, dynamic-range int8 where ``quantize`` (else float32): builtin ops
    only where the converter manages
    (such a model runs on every TensorFlow Lite interpreter), else builtins plus SELECT_TF_OPS ("flex" kernels, which
    only some interpreters link: TensorFlow 2.15's Python one does, 2.21's does not apply them by itself)."""
    import tensorflow as tf

    def convert(ops_sets):
        converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], weights)
        converter.optimizations = [tf.lite.Optimize.DEFAULT] if quantize else []
        converter.target_spec.supported_ops = ops_sets
        # No folding of a preceding multiplication (a layer norm's gain) into fully connected weights: each weight
        # matrix stays one of the model's variables, which per_channel_weights requantizes from its float32 values
        converter._experimental_disable_fuse_mul_and_fc = True  # noqa: SLF001 (the converter's own switch)
        return converter.convert()

    try:
        return convert([tf.lite.OpsSet.TFLITE_BUILTINS])
    except Exception as builtins_error:  # noqa: BLE001 (ConverterError or a plain error, per TF version)
        # Whether flex kernels are what was missing is decided by converting with them, not by the error's wording
        # (which changes between converter versions): if that fails too, the builtins-only error is the one to show.
        try:
            return convert([tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS])
        except Exception:  # noqa: BLE001
            raise builtins_error from None


def _builtin_code(model, opcode_index: int) -> int:
    code = model.operatorCodes[opcode_index]
    return max(code.builtinCode, code.deprecatedBuiltinCode)  # the deprecated field holds codes below 127


def per_channel_weights(blob: bytes, variables) -> tuple[bytes, dict]:
    """Requantize per output channel every fully connected weight matrix that the converter quantized with one
    scale for the whole matrix (TensorFlow 2.15's converter does; 2.21's writes per-channel scales itself).

    Each such int8 matrix is traced to its float32 source among ``variables`` (NumPy arrays; a Keras kernel is the
    transpose of the fully connected weights): the one array every element of which lies within half a
    quantization step of the dequantized matrix (what rounding leaves), the closest if several do. Its rows are
    quantized again, symmetric int8 with one scale per row (``max |row| / 127``), written over the same buffer.
    A matrix with no such source (a weight the converter computed by folding constants together) stays as it is.
    Returns the model bytes and ``{"per_channel": n, "per_tensor": m, "requantized": k}``: fully connected weight
    matrices with per-channel scales in the result, those left with one scale, and how many of the former this
    function requantized."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(blob))
    sources: dict[tuple, list] = {}
    for array in variables:
        array = np.asarray(array)
        if array.ndim == 2 and array.dtype == np.float32:
            sources.setdefault(array.T.shape, []).append(array.T)
            sources.setdefault(array.shape, []).append(array)
    counts = {"per_channel": 0, "per_tensor": 0, "requantized": 0}
    for subgraph in model.subgraphs:
        buffer_users = Counter(tensor.buffer for tensor in subgraph.tensors)
        weights = {op.inputs[1] for op in subgraph.operators
                   if _builtin_code(model, op.opcodeIndex) == schema.BuiltinOperator.FULLY_CONNECTED
                   and len(op.inputs) > 1 and op.inputs[1] >= 0}
        for index in sorted(weights):
            tensor = subgraph.tensors[index]
            quantization = tensor.quantization
            if tensor.type != schema.TensorType.INT8 or quantization is None or quantization.scale is None:
                continue  # a float weight (too small to quantize) or an activation
            if len(quantization.scale) > 1:
                counts["per_channel"] += 1
                continue
            data = model.buffers[tensor.buffer].data if tensor.buffer else None
            shape = tuple(int(d) for d in tensor.shape)
            source = None
            if data is not None and len(shape) == 2 and buffer_users[tensor.buffer] == 1:
                step = float(quantization.scale[0])
                zero = float(quantization.zeroPoint[0]) if quantization.zeroPoint is not None else 0.0
                dequantized = (np.asarray(data, np.uint8).view(np.int8).reshape(shape).astype(np.float32) - zero) * step
                errors = [(float(np.abs(candidate - dequantized).max()), k)
                          for k, candidate in enumerate(sources.get(shape, []))]
                fitting = sorted(e for e in errors if e[0] <= 0.5 * step * (1 + 1e-3) + 1e-7)
                source = sources[shape][fitting[0][1]] if fitting else None
            if source is None:
                counts["per_tensor"] += 1
                continue
            row_max = np.abs(source).max(axis=1)
            scales = np.where(row_max > 0, row_max / 127.0, 1.0).astype(np.float32)
            quantized = np.clip(np.rint(source / scales[:, None]), -127, 127).astype(np.int8)
            model.buffers[tensor.buffer].data = quantized.reshape(-1).view(np.uint8)
            quantization.scale = scales.tolist()
            quantization.zeroPoint = [0] * len(scales)
            quantization.quantizedDimension = 0
            quantization.min = quantization.max = None
            counts["per_channel"] += 1
            counts["requantized"] += 1
    if not counts["requantized"]:
        return blob, counts
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), counts


def _check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    return precision


def export_int8(path, keras_model, **options) -> Path:
    """:func:`export_tflite` with ``precision="int8"``."""
    return export_tflite(path, keras_model, precision="int8", **options)


def export_tflite(path, keras_model, *, precision: str = "int8", input_signature=None, output_names=None,
                  extra: dict | None = None) -> Path:
    """Convert ``keras_model`` to a TensorFlow Lite model at ``path`` (``.tflite``), dynamic-range int8 or float32
    (``precision``), with ``model.json`` beside it naming its inputs and outputs; both written atomically. Returns
    ``path``.

    ``input_signature``: the ``tf.TensorSpec`` of each input, in the order the model takes them (default: the
    model's own inputs, each with its dtype and shape, ``None`` dimensions staying variable); the spec names become
    the input names. The outputs are the model's: one tensor (``output_0``), a list (``output_0``, ...) or a dict
    (its keys); ``output_names`` renames them (list order). :class:`TFLiteModel` reads the file back with a
    ``predict_on_batch`` that takes and returns the same structures as the Keras model's. ``extra``: more keys for
    ``model.json``. Ops: builtins only where they suffice, else builtins plus SELECT_TF_OPS for the ops that have no
    builtin (recorded in ``select_tf_ops``; such a model runs only where the interpreter links the flex kernels).
    """
    import tensorflow as tf

    from bertkit.fileio import atomic_write_bytes, atomic_write_json

    quantize = _check_precision(precision) == "int8"
    specs = list(input_signature) if input_signature is not None else _input_specs(keras_model)
    reference = keras_model.input if input_signature is None else None
    traced = {}

    def serve(*args):
        inputs = tf.nest.pack_sequence_as(reference, list(args)) if reference is not None else list(args)
        structure, named = _named_outputs(keras_model(inputs, training=False))
        if output_names is not None:
            named = dict(zip(output_names, named.values()))
        traced["structure"], traced["names"] = structure, list(named)
        return named

    concrete = tf.function(serve, input_signature=specs).get_concrete_function()
    # The converter saves its trackable as a SavedModel first: a plain module holding the weights saves in a second
    # or two, the Keras model itself (every layer's call traced again) takes several times longer, same result.
    weights = tf.Module(name="weights")
    weights.variables_ = list(keras_model.variables)
    blob = _convert(concrete, weights, quantize=quantize)
    if quantize:
        blob, fully_connected = per_channel_weights(blob, [v.numpy() for v in keras_model.variables])
    ops, int8 = _converted_ops(blob)
    if quantize and not int8:
        raise ConfigError(f"export_tflite: the converter quantized no weight of {keras_model.name!r} (no int8 "
                          f"tensor in the converted model)")
    path = Path(path)
    atomic_write_bytes(path, blob)

    def described(name, spec):
        return {"name": name, "dtype": spec.dtype.name, "shape": [-1 if d is None else d for d in spec.shape]}

    metadata = {
        "format": FORMAT,
        "tflite": path.name,
        "sha256": _sha256(blob),
        "bytes": len(blob),
        "precision": precision,
        "quantization": QUANTIZATION if quantize else NO_QUANTIZATION,
        "inputs": [described(spec.name, spec) for spec in specs],
        # a dict of inputs is flattened in sorted key order, the order of ``inputs``
        "input_keys": sorted(keras_model.input) if isinstance(reference, dict) else None,
        "outputs": [described(name, concrete.structured_outputs[name]) for name in traced["names"]],
        "output_structure": traced["structure"],
        "select_tf_ops": sorted(op[len("Flex"):] for op in ops if op.startswith("Flex")),
        "int8_tensors": int8,
        # fully connected weight matrices with one scale per output channel / one scale in all; requantized: by
        # per_channel_weights, the converter having written one scale (int8 only)
        "fully_connected_weights": fully_connected if quantize else None,
        "ops": dict(sorted(ops.items())),
        "tensorflow": tf.__version__,
        **(extra or {}),
    }
    atomic_write_json(metadata_path(path), metadata)
    return path


# -------------------------------------------------------------------------------------------------------- running
def read_metadata(tflite_path) -> dict:
    """``model.json`` of an export, checked against the ``.tflite`` beside it (format and checksum); ``precision``
    is ``int8`` in the descriptions written before float32 exports existed, which have none."""
    from bertkit.fileio import read_json

    tflite_path = Path(tflite_path)
    if not tflite_path.is_file():
        raise CheckpointError(tflite_path, "no such TensorFlow Lite model (write one with: python -m bertkit.quantize "
                                           "RUN_DIR [--precision float32])")
    meta_path = metadata_path(tflite_path)
    if not meta_path.is_file():
        raise CheckpointError(meta_path, f"missing: {tflite_path.name} was not written by bertkit.quantize "
                                         f"(its description of inputs and outputs is not beside it)")
    try:
        metadata = read_json(meta_path)
    except BertkitError as error:  # not UTF-8, malformed JSON: a broken export
        raise CheckpointError(meta_path, f"unreadable: {error}") from None
    if not isinstance(metadata, dict) or metadata.get("format") not in FORMATS_READ:
        raise CheckpointError(meta_path, f"not a {FORMAT} description (format "
                                         f"{metadata.get('format') if isinstance(metadata, dict) else None!r})")
    if _sha256(tflite_path.read_bytes()) != metadata["sha256"]:
        raise CheckpointError(tflite_path, f"does not match {meta_path.name} (checksum differs: an interrupted or "
                                           f"mixed export); export again with --overwrite")
    metadata.setdefault("precision", "int8")
    return metadata


class TFLiteModel:
    """A model written by :func:`export_tflite`, run by LiteRT's interpreter (:func:`litert`) with the Keras model's
    ``predict_on_batch`` interface.

    ``predict_on_batch(inputs)`` takes what the Keras model took: a list or tuple of arrays in input order, a dict
    by input name (extra keys are ignored), or one array for a one-input model; any batch size and any length of
    the variable dimensions (the input tensors are resized and the interpreter re-allocated when the shapes change).
    It returns the Keras model's structure: one array, a list, or a dict in the model's output order.
    ``num_threads``: the interpreter's threads (default: the CPUs this process may use). Calls are serialised (one
    interpreter, one call at a time)."""

    def __init__(self, path, num_threads: int | None = None):
        self.path = Path(path)
        self.metadata = read_metadata(self.path)
        self.num_threads = int(num_threads or _cpu_count())
        self.interpreter = litert().Interpreter(model_path=str(self.path), num_threads=self.num_threads)
        runner = self.interpreter.get_signature_runner()
        inputs, outputs = runner.get_input_details(), runner.get_output_details()
        self.input_names = [spec["name"] for spec in self.metadata["inputs"]]
        self.output_names = [spec["name"] for spec in self.metadata["outputs"]]
        self._input_index = [inputs[name]["index"] for name in self.input_names]
        self._input_dtype = [inputs[name]["dtype"] for name in self.input_names]
        self._output_index = [outputs[name]["index"] for name in self.output_names]
        # a dict of inputs is read by the Keras input names (a model's dict keys), else by the signature names
        self._dict_keys = self.metadata.get("input_keys") or self.input_names
        self._shapes = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"TFLiteModel({str(self.path)!r}, num_threads={self.num_threads})"

    def _arrays(self, inputs) -> list[np.ndarray]:
        if isinstance(inputs, dict):
            missing = [k for k in self._dict_keys if k not in inputs]
            if missing:
                raise ConfigError(f"{self.path}: inputs lack {', '.join(missing)} (the model takes "
                                  f"{', '.join(self._dict_keys)})")
            values = [inputs[k] for k in self._dict_keys]
        elif isinstance(inputs, (list, tuple)):
            values = list(inputs)
        else:
            values = [inputs]
        if len(values) != len(self.input_names):
            raise ConfigError(f"{self.path}: {len(values)} inputs given, the model takes {len(self.input_names)} "
                              f"({', '.join(self.input_names)})")
        return [np.ascontiguousarray(np.asarray(v), dtype=dtype) for v, dtype in zip(values, self._input_dtype)]

    def predict_on_batch(self, inputs):
        arrays = self._arrays(inputs)
        shapes = [a.shape for a in arrays]
        with self._lock:
            if shapes != self._shapes:
                for index, shape in zip(self._input_index, shapes):
                    self.interpreter.resize_tensor_input(index, shape, strict=False)
                self._allocate()
                self._shapes = shapes
            for index, array in zip(self._input_index, arrays):
                self.interpreter.set_tensor(index, array)
            self.interpreter.invoke()
            outputs = [self.interpreter.get_tensor(index) for index in self._output_index]  # copies
        structure = self.metadata["output_structure"]
        if structure == "tensor":
            return outputs[0]
        if structure == "dict":
            return dict(zip(self.output_names, outputs))
        return outputs

    __call__ = predict_on_batch

    def _allocate(self) -> None:
        try:
            self.interpreter.allocate_tensors()
        except RuntimeError as error:
            flex = self.metadata.get("select_tf_ops") or []
            if flex and "select tensorflow op" in str(error).lower():
                raise ConfigError(
                    f"{self.path}: this model needs TensorFlow's flex kernels for {', '.join(flex)} (it was "
                    f"exported by TensorFlow {self.metadata.get('tensorflow')}), and LiteRT's interpreter finds none "
                    f"here: TensorFlow Lite serving takes models of builtin ops only (every bertkit encoder "
                    f"converts to builtin ops)") from None
            raise

    def delegate_nodes(self) -> dict[str, int]:
        """Nodes of the plan that delegates took: ``{"xnnpack": n, "flex": m}``. ``flex`` (the SELECT_TF_OPS
        kernels) is applied whenever the model has TF ops; ``xnnpack`` is what the interpreter's default delegate
        took, found as the extra delegate nodes of this interpreter over one without default delegates. Read from
        the interpreter's ``_get_ops_details`` (TensorFlow Lite has no public listing of the plan)."""
        lite = litert()

        def delegates(interpreter) -> int:
            interpreter.allocate_tensors()
            return Counter(op["op_name"] for op in interpreter._get_ops_details())["DELEGATE"]  # noqa: SLF001

        without_defaults = lite.Interpreter(
            model_path=str(self.path), num_threads=self.num_threads,
            experimental_op_resolver_type=lite.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        flex = delegates(without_defaults)
        with self._lock:
            if self._shapes is None:
                self._allocate()
            total = Counter(op["op_name"] for op in self.interpreter._get_ops_details())["DELEGATE"]  # noqa: SLF001
        return {"xnnpack": total - flex, "flex": flex}


# ----------------------------------------------------------------------------------------- the TensorFlow Lite encoder
@functools.lru_cache(maxsize=1)
def _tflite_encoder_class():
    import tensorflow as tf

    class TFLiteEncoder(tf.keras.layers.Layer):
        """``[token_ids, segment_ids]`` -> hidden states ``(batch, seq, hidden)`` from a :class:`TFLiteModel` (a
        ``tf.numpy_function``, so it runs inside Keras ``predict_on_batch`` and ``tf.function`` s too), or of the
        first position alone ``(batch, 1, hidden)`` where the export holds a ``first_token_encoder`` view; the
        output mask is ``token_ids != 0`` of those positions, as the Keras encoder's. A batch goes to the
        interpreter in calls of at most ``tokens_per_invoke`` tokens (at least one row; :data:`TOKENS_PER_INVOKE`).
        No weights, nothing to train, not serialisable."""

        def __init__(self, model: TFLiteModel, hidden_size: int, name: str = ENCODER_LAYER,
                     tokens_per_invoke: int = TOKENS_PER_INVOKE, first_position_only: bool = False):
            super().__init__(name=name, trainable=False)
            self.model, self.hidden_size, self.tokens_per_invoke = model, int(hidden_size), int(tokens_per_invoke)
            self.first_position_only = bool(first_position_only)

        def call(self, inputs, training=None):
            token_ids, segment_ids = (tf.cast(x, tf.int32) for x in inputs)
            hidden = tf.numpy_function(self.hidden_states, [token_ids, segment_ids], tf.float32,
                                       name="tflite_encoder")
            hidden.set_shape([None, 1 if self.first_position_only else None, self.hidden_size])
            return hidden

        def hidden_states(self, token_ids, segment_ids):
            """The hidden states of a batch of NumPy token and segment ids, ``tokens_per_invoke`` at a time."""
            rows = max(1, self.tokens_per_invoke // max(1, token_ids.shape[1]))
            parts = [self.model.predict_on_batch({"token_ids": token_ids[i:i + rows],
                                                  "segment_ids": segment_ids[i:i + rows]})
                     for i in range(0, max(1, len(token_ids)), rows)]
            return parts[0] if len(parts) == 1 else np.concatenate(parts)

        def compute_mask(self, inputs, mask=None):
            token_ids = inputs[0][:, :1] if self.first_position_only else inputs[0]
            return tf.not_equal(tf.cast(token_ids, tf.int32), 0)

        def get_config(self):
            raise NotImplementedError("the TensorFlow Lite encoder wraps an interpreter; it is not serialisable")

    return TFLiteEncoder


def tflite_encoder(tflite_path, *, num_threads: int | None = None, tokens_per_invoke: int = TOKENS_PER_INVOKE):
    """A Keras layer named ``encoder`` computing the encoder's hidden states with the int8 or float32 model at
    ``tflite_path`` (written by :func:`export_tflite_run`): what a recipe's ``build_model(..., encoder=...)`` takes.
    Each batch goes to the interpreter in calls of at most ``tokens_per_invoke`` tokens (at least one row)."""
    if tokens_per_invoke < 1:
        raise ConfigError(f"tflite_encoder: tokens_per_invoke must be at least 1, not {tokens_per_invoke}")
    model = TFLiteModel(tflite_path, num_threads=num_threads)
    if model.input_names != list(ENCODER_INPUTS) or model.output_names != [ENCODER_OUTPUT]:
        raise CheckpointError(tflite_path, f"not an encoder export (inputs {model.input_names}, outputs "
                                           f"{model.output_names}; expected {list(ENCODER_INPUTS)} -> "
                                           f"[{ENCODER_OUTPUT!r}])")
    shape = model.metadata["outputs"][0]["shape"]  # (batch, seq, hidden); seq 1: the [CLS] position alone
    return _tflite_encoder_class()(model, shape[-1], tokens_per_invoke=tokens_per_invoke,
                                 first_position_only=shape[1] == 1)


# --------------------------------------------------------------------------------------------------------- a run
def _head_layers(model, encoder) -> list:
    """The layers of a recipe model besides its encoder that hold weights (the head: Dense layers, the CRF)."""
    return [layer for layer in model.layers if layer is not encoder and layer.weights]


def _pack_head_weights(layers) -> tuple[bytes, dict]:
    arrays = {f"{layer.name}::{i}": w for layer in layers for i, w in enumerate(layer.get_weights())}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue(), {layer.name: len(layer.weights) for layer in layers}


def export_int8_run(run_dir, out=None, *, overwrite: bool = False) -> Path:
    """:func:`export_tflite_run` with ``precision="int8"``."""
    return export_tflite_run(run_dir, out, precision="int8", overwrite=overwrite)


def export_tflite_run(run_dir, out=None, *, precision: str = "int8", overwrite: bool = False) -> Path:
    """Write the TensorFlow Lite export (``precision``: dynamic-range ``int8`` or ``float32``) of a finished run
    (``load_run``'s model, with the run's kept weights) to ``out`` (default ``RUN_DIR/export_int8/model.tflite``
    or ``RUN_DIR/export_float32/model.tflite``), with ``model.head.npz`` and ``model.json`` beside it. An existing
    ``out`` is a ``ConfigError`` unless ``overwrite``; a directory that is not a run, a ``CheckpointError``."""
    from bertkit.fileio import atomic_write_bytes
    from bertkit.recipe import load_run

    run_dir = Path(run_dir)
    _check_precision(precision)  # before anything is written (the head weights go first)
    out = Path(out) if out is not None else run_dir / DEFAULT_EXPORTS[precision]
    if out.is_dir():
        raise ConfigError(f"{out}: is a directory; --out names the .tflite file to write")
    if out.exists() and not overwrite:
        raise ConfigError(f"{out}: exists already; pass --overwrite to replace it")
    predictor = load_run(run_dir)
    model = predictor.model
    try:
        encoder = model.get_layer(ENCODER_LAYER)
    except ValueError:
        raise CheckpointError(run_dir, f"the {predictor.recipe.name} model has no layer named {ENCODER_LAYER!r} "
                                       f"(bertkit.encoder.load_encoder's model): nothing to quantize") from None
    head_bytes, head_layers = _pack_head_weights(_head_layers(model, encoder))
    head_path = head_weights_path(out)
    atomic_write_bytes(head_path, head_bytes)
    extra = {"run": {"task": predictor.recipe.name, "run_dir": str(run_dir.resolve())},
             "head_weights": {"file": head_path.name, "sha256": _sha256(head_bytes), "layers": head_layers}}
    return export_encoder(out, encoder, precision=precision, extra=extra)


def export_encoder(path, encoder, *, precision: str = "int8", extra: dict | None = None) -> Path:
    """:func:`export_tflite` of an encoder (``bertkit.encoder.load_encoder``'s model, or a view of it) with the
    interface :func:`tflite_encoder` reads: int32 ``token_ids`` and ``segment_ids`` of any batch and length in,
    ``hidden`` out."""
    import tensorflow as tf

    specs = [tf.TensorSpec([None, None], tf.int32, name=name) for name in ENCODER_INPUTS]
    return export_tflite(path, encoder, precision=precision, input_signature=specs, output_names=[ENCODER_OUTPUT],
                         extra=extra)


def _load_head_weights(model, encoder, tflite_path, metadata: dict) -> None:
    """Set the head layers' weights from the export's ``model.head.npz``; any difference in layers is an error."""
    info = metadata.get("head_weights")
    if not info:
        raise CheckpointError(metadata_path(tflite_path), "no head_weights: an encoder-only export, not a run's "
                                                          "(write one with: python -m bertkit.quantize RUN_DIR)")
    path = Path(tflite_path).parent / info["file"]
    try:
        data = path.read_bytes()
    except OSError as error:
        raise CheckpointError(path, f"cannot read the head weights ({error.strerror or error})") from None
    if _sha256(data) != info["sha256"]:
        raise CheckpointError(path, f"does not match {metadata_path(tflite_path).name} (checksum differs); export "
                                    f"again with --overwrite")
    weights = np.load(io.BytesIO(data), allow_pickle=False)
    layers = _head_layers(model, encoder)
    have = {layer.name: len(layer.weights) for layer in layers}
    if have != info["layers"]:
        raise CheckpointError(path, f"head layers {info['layers']} do not fit the recipe's model {have} (the recipe "
                                    f"changed since the export?)")
    for layer in layers:
        layer.set_weights([weights[f"{layer.name}::{i}"] for i in range(len(layer.weights))])


class TFLitePredictor(Predictor):
    """A run's ``Predictor`` whose model holds a TensorFlow Lite encoder (:func:`load_tflite_run`); ``precision``
    says which (``int8`` or ``float32``), read from the export's description."""

    @property
    def precision(self) -> str:
        return self.model.get_layer(ENCODER_LAYER).model.metadata["precision"]

    def export(self, path):
        raise ConfigError(f"{self.run_dir}: a TensorFlow Lite predictor cannot write a SavedModel (its encoder is a "
                          f"TensorFlow Lite model); export the run's Keras model: load_run(run_dir).export(path)")


def load_int8_run(run_dir, tflite=None, **options):
    """:func:`load_tflite_run` of the run's int8 export."""
    return load_tflite_run(run_dir, tflite, precision="int8", **options)


def load_tflite_run(run_dir, tflite=None, *, precision: str | None = None, recipe=None, num_threads: int | None = None,
                    batch_size: int = 64, tokens_per_invoke: int = TOKENS_PER_INVOKE):
    """A ``bertkit.recipe.Predictor`` for a run whose encoder is the TensorFlow Lite export at ``tflite``:
    ``predict(records)`` gives the recipe's decoded outputs as ``load_run(run_dir).predict`` does, tokenized in
    Python by the run's tokenizer. ``tflite`` defaults to the run's export of ``precision``
    (``RUN_DIR/export_int8/model.tflite``, or ``RUN_DIR/export_float32/model.tflite``); a given ``tflite`` is
    served at its own precision, which must be ``precision`` where that is given too. ``recipe``: as
    ``load_run``'s (default: the recipe folder recorded in the run). Its ``export`` (a raw-string SavedModel) is not
    available: export the run's Keras model (``load_run``) for that. ``tokens_per_invoke``: see
    :func:`tflite_encoder`."""
    run_dir = Path(run_dir)
    if precision is not None:
        _check_precision(precision)
    recipe, config, args, tokenizer = read_run(run_dir, recipe)
    tflite = Path(tflite) if tflite is not None else run_dir / DEFAULT_EXPORTS[precision or "int8"]
    encoder = tflite_encoder(tflite, num_threads=num_threads, tokens_per_invoke=tokens_per_invoke)
    metadata = encoder.model.metadata
    precision = precision or metadata["precision"]
    if metadata["precision"] != precision:
        raise CheckpointError(tflite, f"an export of precision {metadata['precision']}, not {precision} (load it "
                                      f"with precision={metadata['precision']!r})")
    task = metadata.get("run", {}).get("task")
    if task != recipe.name:
        raise CheckpointError(tflite, f"an export of a {task!r} run, not of this {recipe.name!r} run")
    model = recipe.build_model(args.bert_dir, config["head"], encoder=encoder)
    _load_head_weights(model, encoder, tflite, metadata)
    return TFLitePredictor(recipe, model, tokenizer, config["head"], args, run_dir, batch_size)


# ---------------------------------------------------------------------------------------------------- command line
def main(argv=None) -> int:
    """``python -m bertkit.quantize RUN_DIR [--precision int8|float32] [--out FILE] [--overwrite]``: one ``error:``
    line and status 2 for a user fault (not a run, an existing file)."""
    from bertkit.cli import run_main, say

    parser = argparse.ArgumentParser(
        prog="python -m bertkit.quantize",
        description="Write a TensorFlow Lite copy (dynamic-range int8, or float32) of a finished run's encoder "
                    "(token-id interface) with its float32 head weights, for CPU serving with "
                    "bertkit.quantize.load_int8_run / load_tflite_run.")
    parser.add_argument("run_dir", type=Path, help="a finished run directory (run_config.json, best/)")
    parser.add_argument("--precision", choices=PRECISIONS, default="int8",
                        help="int8: dynamic-range int8 weights (default); float32: no quantization")
    parser.add_argument("--out", type=Path, help=f"the .tflite file to write (default: RUN_DIR/"
                                                 f"{DEFAULT_EXPORTS['int8']} or RUN_DIR/{DEFAULT_EXPORTS['float32']})")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export")

    def body(args):
        path = export_tflite_run(args.run_dir, args.out, precision=args.precision, overwrite=args.overwrite)
        metadata = read_metadata(path)
        flex = ", ".join(metadata["select_tf_ops"]) or "none"
        fully_connected = metadata["fully_connected_weights"]
        weights = (f"{metadata['int8_tensors']} int8 weight tensors, {fully_connected['per_channel']} fully "
                   f"connected ones with a scale per output channel" if fully_connected else "float32 weights")
        say(f"wrote {path} ({metadata['bytes'] / 2**20:.1f} MiB, {weights}; TF select ops: {flex}), "
            f"{head_weights_path(path).name} and {metadata_path(path).name}")
        print(path)

    return run_main(lambda: body(parser.parse_args(argv)))


if __name__ == "__main__":
    from bertkit.cli import exit_process

    exit_process(main())  # without the interpreter's teardown of TensorFlow (see there)
