"""Read the tensors of a PyTorch ``pytorch_model.bin`` (``torch.save`` zip format) as numpy arrays, without torch and
without running any code from the file.

A torch zip checkpoint is a zip archive ``<name>/data.pkl`` (a pickle of the state dict) plus one entry
``<name>/data/<key>`` per storage (the raw bytes of a tensor's memory, little-endian unless ``<name>/byteorder`` says
otherwise). The pickle refers to a handful of globals: ``collections.OrderedDict``, the tensor rebuild functions
``torch._utils._rebuild_tensor_v2`` / ``_rebuild_parameter`` and the storage classes ``torch.FloatStorage`` etc.,
and fetches storages through ``persistent_load`` with ids ``("storage", <storage class>, key, location, numel)``.

:class:`TensorUnpickler` maps exactly those names to local numpy stand-ins; any other global (``os.system``,
``builtins.eval``, a class of some library...) is refused with a :class:`~bertkit.errors.CheckpointError` before
anything is called. This is the guarantee of ``torch.load(weights_only=True)``: only tensors (and the plain
containers and numbers around them) come out. The result must be a flat ``{name: tensor}`` mapping, which is what
Hugging Face ``save_pretrained`` writes.

The legacy (torch < 1.6) non-zip format is not supported: it is recognised and refused with a clear error.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from bertkit.errors import CheckpointError

__all__ = ["TensorUnpickler", "load_torch_state_dict", "read_torch_state_dict", "STORAGE_DTYPES"]

# torch storage class name -> numpy dtype of its elements ("bfloat16": numpy has none, read as uint16 bit patterns).
STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
}

# The first bytes of a legacy torch.save file: a pickled magic number (protocol 2, LONG1 0x1950a86a20f9469cfc6c).
_LEGACY_MAGIC = b"\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19"
_ZIP_MAGIC = b"PK\x03\x04"


class _StorageType:
    """Stand-in for a ``torch.<X>Storage`` class: only its element type matters."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str):
        self.name = name
        self.dtype = STORAGE_DTYPES[name]

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _Storage:
    """One storage of the archive: a flat array of ``numel`` elements read from ``data/<key>``."""

    __slots__ = ("key", "array")

    def __init__(self, key: str, array: np.ndarray):
        self.key = key
        self.array = array


def _as_int_tuple(value, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"tensor {what} is {value!r}, not a tuple of integers")
    return value


def _rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                    metadata=None) -> np.ndarray:
    """numpy twin of ``torch._utils._rebuild_tensor_v2``: the view ``(offset, size, stride)`` of a storage, copied
    into a fresh C-contiguous array. Every index the view touches is checked to lie inside the storage."""
    if not isinstance(storage, _Storage):
        raise ValueError(f"tensor storage is {type(storage).__name__}, not a storage of the archive")
    size = _as_int_tuple(size, "size")
    stride = _as_int_tuple(stride, "stride")
    if not isinstance(storage_offset, int) or isinstance(storage_offset, bool) or storage_offset < 0:
        raise ValueError(f"tensor storage offset {storage_offset!r} is not a non-negative integer")
    if len(size) != len(stride) or any(v < 0 for v in size + stride):
        raise ValueError(f"tensor size {size} and stride {stride} do not fit together")
    flat = storage.array
    if 0 in size:
        return np.zeros(size, dtype=flat.dtype)
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= flat.size:
        raise ValueError(f"a tensor of size {size} at offset {storage_offset} reads past the end of storage "
                         f"data/{storage.key} ({flat.size} elements)")
    view = np.lib.stride_tricks.as_strided(flat[storage_offset:], shape=size,
                                           strides=tuple(s * flat.itemsize for s in stride), writeable=False)
    return np.array(view, copy=True, order="C")


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None) -> np.ndarray:
    """numpy twin of ``torch._utils._rebuild_parameter``: an ``nn.Parameter`` is just its tensor here."""
    if not isinstance(data, np.ndarray):
        raise ValueError(f"parameter data is {type(data).__name__}, not a tensor")
    return data


class TensorUnpickler(pickle.Unpickler):
    """Unpickles the ``data.pkl`` of a torch zip archive, allowing only the globals a state dict of tensors needs.

    ``find_class`` returns local stand-ins (never importing or calling anything named in the file);
    ``persistent_load`` reads the referenced storage from the archive. A refused global raises
    :class:`CheckpointError` naming ``source`` and the global.
    """

    _ALLOWED = {
        ("collections", "OrderedDict"): OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def __init__(self, file, *, archive: zipfile.ZipFile, prefix: str, source, byteorder: str = "little"):
        super().__init__(file)
        self._archive = archive
        self._prefix = prefix
        self._source = source
        self._byteorder = "<" if byteorder == "little" else ">"
        self._storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str):
        allowed = self._ALLOWED.get((module, name))
        if allowed is not None:
            return allowed
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise CheckpointError(self._source, f"the pickle refers to {module}.{name}, which is not part of a tensor "
                                            f"checkpoint; refusing to load it (only tensors are read)")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"
                and isinstance(pid[1], _StorageType) and isinstance(pid[2], str) and isinstance(pid[4], int)):
            raise CheckpointError(self._source, f"unexpected persistent id {pid!r:.80} (not a torch storage)")
        _, storage_type, key, _location, numel = pid
        cached = self._storages.get(key)
        if cached is not None:
            return cached
        name = f"{self._prefix}data/{key}"
        try:
            data = self._archive.read(name)
        except KeyError:
            raise CheckpointError(self._source, f"storage {name} is missing from the archive (truncated?)") from None
        bfloat16 = storage_type.dtype == "bfloat16"
        dtype = np.dtype("uint16" if bfloat16 else storage_type.dtype).newbyteorder(self._byteorder)
        if numel < 0 or len(data) != numel * dtype.itemsize:
            raise CheckpointError(self._source, f"storage {name} holds {len(data)} bytes but {numel} elements of "
                                                f"{storage_type!r} need {numel * dtype.itemsize} (truncated?)")
        array = np.frombuffer(data, dtype=dtype).astype(dtype.newbyteorder("="))
        if bfloat16:  # the top 16 bits of a float32
            array = (array.astype(np.uint32) << 16).view(np.float32)
        storage = self._storages[key] = _Storage(key, array)
        return storage


def read_torch_state_dict(data: bytes, source) -> dict[str, np.ndarray]:
    """The ``{name: array}`` state dict in the bytes ``data`` of a torch zip checkpoint (``source`` names the file in
    errors). bfloat16 tensors come back as float32 (exact); every other dtype as itself.

    Raises :class:`CheckpointError` naming ``source`` for a legacy (non-zip) torch file, a truncated or corrupt
    archive (zip CRCs are checked), a pickle that refers to anything but tensors, or one that does not hold a flat
    mapping of names to tensors."""
    source = str(source)
    if data.startswith(_LEGACY_MAGIC):
        raise CheckpointError(source, "legacy (torch < 1.6) serialization is not supported; re-save it with "
                                      "torch.save in a current torch, or as model.safetensors")
    if not data.startswith(_ZIP_MAGIC):
        raise CheckpointError(source, "not a torch zip checkpoint (corrupt, or not a pytorch_model.bin)")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        pickles = [name for name in archive.namelist() if name.endswith("data.pkl")
                   and name.count("/") == 1]
        if len(pickles) != 1:
            raise CheckpointError(source, f"expected one <name>/data.pkl in the archive, found {len(pickles)}")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if f"{prefix}byteorder" in archive.namelist():
            byteorder = archive.read(f"{prefix}byteorder").decode("ascii").strip()
            if byteorder not in ("little", "big"):
                raise CheckpointError(source, f"unknown byteorder {byteorder!r}")
        unpickler = TensorUnpickler(io.BytesIO(archive.read(pickles[0])), archive=archive, prefix=prefix,
                                    source=source, byteorder=byteorder)
        state = unpickler.load()
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, pickle.UnpicklingError, EOFError, ValueError, TypeError,
            KeyError, IndexError, AttributeError, UnicodeDecodeError, OverflowError, RecursionError, OSError) as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(source, f"truncated or corrupt torch checkpoint: {message}") from None
    if not isinstance(state, dict):
        raise CheckpointError(source, f"holds a {type(state).__name__}, not a state dict of tensors")
    for name, value in state.items():
        if not isinstance(name, str) or not isinstance(value, np.ndarray):
            raise CheckpointError(source, f"entry {name!r:.60} is a {type(value).__name__}, not a tensor "
                                          f"(only a flat state dict of tensors is read)")
    return dict(state)


def load_torch_state_dict(path) -> dict[str, np.ndarray]:
    """:func:`read_torch_state_dict` of the file at ``path``."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(path, "missing file") from None
    except OSError as exc:
        raise CheckpointError(path, f"cannot read: {exc.strerror or exc}") from None
    return read_torch_state_dict(data, path)
