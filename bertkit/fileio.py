"""File reading and writing with clear errors and atomic writes.

Readers turn bad input into one :class:`~bertkit.errors.DataError` naming the file, the 1-based line and the field.
Writers never leave a half-written file behind: they write a temporary file in the same directory, fsync it and
``os.replace`` it onto the target (a rename is atomic on POSIX and Windows within one file system).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any, Iterator

from bertkit.errors import DataError

__all__ = [
    "atomic_write_text",
    "atomic_write_json",
    "atomic_write_bytes",
    "atomic_dir",
    "write_jsonl",
    "write_splits",
    "read_text",
    "read_json",
    "parse_jsonl",
    "iter_jsonl",
    "read_input",
    "write_jsonl_output",
    "read_table",
    "require",
]


# ----------------------------------------------------------------------------------------------------------- writing
def _fsync_dir(directory: Path) -> None:
    """Persist a rename: fsync the directory entry (best effort; not possible on every OS/file system)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _cannot_write(path, error: OSError) -> DataError:
    """The one-line error for an output path that cannot be written (a file on the way, no permission, disk full)."""
    where = f": {error.filename}" if error.filename and str(error.filename) != str(path) else ""
    return DataError(path, None, None, f"cannot write it ({error.strerror or error}{where})")


def _make_parent(path: Path) -> None:
    """Create the folder ``path`` goes in; when it cannot be (a file in the way, ...), a DataError naming ``path``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _cannot_write(path, error) from None


def check_destination(path, *, directory: bool = False) -> Path:
    """Before long work (loading a model, predicting): a ``DataError`` naming ``path`` when it could not be written
    at the end -- a file where a folder on its way should be, a folder it cannot write in, or (a file to write) a
    folder at ``path`` itself. ``directory``: ``path`` is a folder to write (replaced whole), so a file there is in
    the way. Creates nothing; returns ``path``."""
    path = Path(path)
    if path.is_dir() and not directory:
        raise DataError(path, None, None, "cannot write it (is a directory)")
    if path.exists() and not path.is_dir() and directory:
        raise DataError(path, None, None, "cannot write it (a file is in the way)")
    for parent in path.parents:  # the nearest existing folder on the way must be a folder we can write in
        if parent.exists():
            if not parent.is_dir():
                raise DataError(path, None, None, f"cannot write it (not a directory: {parent})")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise DataError(path, None, None, f"cannot write it (permission denied: {parent})")
            break
    return path


def atomic_write_bytes(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same dir, fsync, ``os.replace``). Returns the path."""
    path = Path(path)
    _make_parent(path)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:12]}"
    # os.open with 0o666 lets the process umask decide the permissions, like a plain open() would.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)
    return path


def atomic_write_text(path, text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically (no newline translation)."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def _json_default(value: Any):
    """JSON for the values reports and configs carry besides builtins: numpy scalars/arrays, paths, sets."""
    if hasattr(value, "tolist"):  # numpy arrays and scalars
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"object of type {type(value).__name__} is not JSON serialisable")


def atomic_write_json(path, obj: Any, *, indent: int | None = 2) -> Path:
    """Write ``obj`` as pretty UTF-8 JSON (numpy values and paths converted) to ``path`` atomically."""
    text = json.dumps(obj, indent=indent, ensure_ascii=False, default=_json_default)
    return atomic_write_text(path, text + "\n")


def _jsonl_lines(records) -> list[str]:
    """One JSON line (UTF-8 text kept as is, numpy values and paths converted) per record."""
    return [json.dumps(record, ensure_ascii=False, default=_json_default) + "\n" for record in records]


def write_jsonl(path, records) -> int:
    """Write ``records`` (dicts) as JSON lines to the file ``path`` atomically; returns how many were written."""
    lines = _jsonl_lines(records)
    atomic_write_text(path, "".join(lines))
    return len(lines)


def write_splits(out_dir, splits: dict[str, list], source_md: str) -> dict[str, int]:
    """Write a converted dataset: ``out_dir/<split>.jsonl`` for each ``split -> records`` of ``splits``, then
    ``out_dir/SOURCE.md`` (``source_md``: where the data came from and how it was converted), each atomically;
    ``out_dir`` is created if needed. Returns the number of records written per split."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = {split: write_jsonl(out_dir / f"{split}.jsonl", records) for split, records in splits.items()}
    atomic_write_text(out_dir / "SOURCE.md", source_md)
    return counts


@contextlib.contextmanager
def atomic_dir(path) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``path``; on normal exit it replaces ``path`` as a whole.

    For outputs written by other libraries as several files (TF SavedModels, checkpoints): readers see either the
    old complete directory or the new complete one. On an exception the temporary directory is removed and ``path``
    is left untouched.
    """
    path = Path(path)
    _make_parent(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if path.exists() or path.is_symlink():
        # A directory cannot be os.replace'd onto a non-empty one: move the old one aside first.
        old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:12]}"
        os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        if old is not None:
            os.replace(old, path)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(path.parent)
    if old is not None:
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink()


# ----------------------------------------------------------------------------------------------------------- reading
def _without_bom(text: str) -> str:
    return text[1:] if text.startswith("\ufeff") else text  # a UTF-8 byte-order mark is not content


def _decode_utf8(data: bytes, path) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        line_start = data.rfind(b"\n", 0, e.start) + 1
        column = len(data[line_start : e.start].decode("utf-8", errors="replace")) + 1
        raise DataError(
            path, line, "encoding",
            f"not valid UTF-8 (byte 0x{data[e.start]:02x} at column {column}); re-encode the file as UTF-8",
        ) from None
    return _without_bom(text)


def read_text(path) -> str:
    """Read a UTF-8 text file (a leading BOM is dropped; ``\\r\\n`` and ``\\r`` become ``\\n`` like ``open()``).

    A missing file -> ``DataError(path, None, None, "no such file")`` (any other reason it cannot be read: a
    ``DataError`` saying so); bytes that are not UTF-8 ->
    ``DataError(path, line, "encoding", ...)`` naming the line of the first bad byte.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DataError(path, None, None, "no such file") from None
    except IsADirectoryError:
        raise DataError(path, None, None, "is a directory, expected a file") from None
    except OSError as error:  # a file on the way ("Not a directory"), no permission, ...
        raise DataError(path, None, None, f"cannot read it ({error.strerror or error})") from None
    text = _decode_utf8(data, path)
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def read_json(path) -> Any:
    """The JSON value of a whole UTF-8 file (read as :func:`read_text`). Malformed JSON ->
    ``DataError(path, line, None, "malformed JSON: ...")`` naming the 1-based line where the parser stopped."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, e.lineno, None, f"malformed JSON: {e.msg}") from None


def parse_jsonl(text: str, source) -> list[tuple[int, dict]]:
    """``(line_no, record)`` for each non-blank line of JSON-lines ``text`` read from ``source`` (a path, or a name
    such as ``<stdin>`` for error messages); ``line_no`` is 1-based.

    A line that is not valid JSON, or JSON that is not an object, raises :class:`DataError` for that line.
    """
    records = []
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(source, line_no, None, f"malformed JSON at column {e.colno}: {e.msg}") from None
        if not isinstance(record, dict):
            raise DataError(source, line_no, None, f"expected a JSON object, got {type(record).__name__}")
        records.append((line_no, record))
    return records


def iter_jsonl(path) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_no, record)`` for each non-blank line of a JSON-lines file; errors as :func:`parse_jsonl`."""
    yield from parse_jsonl(read_text(path), path)


def read_input(path) -> tuple[str, str]:
    """``(text, source)`` of a UTF-8 file, or of standard input when ``path`` is ``-`` (source ``<stdin>``): the
    input of the recipes' ``predict.py``. ``source`` names the input in error messages."""
    if str(path) == "-":
        stream = getattr(sys.stdin, "buffer", None)
        if stream is None:  # a text stream without bytes (tests, embedding): already decoded
            return _without_bom(sys.stdin.read()), "<stdin>"
        text = _decode_utf8(stream.read(), "<stdin>")  # the same error as a file's bad bytes
        return text.replace("\r\n", "\n").replace("\r", "\n"), "<stdin>"
    return read_text(path), str(path)


def write_jsonl_output(path, records) -> int:
    """Write ``records`` (dicts) as JSON lines to ``path``, atomically, or to standard output when ``path`` is
    ``-``; returns how many were written. A path that cannot be written is a ``DataError`` naming it."""
    if str(path) != "-":
        try:
            return write_jsonl(path, records)
        except OSError as error:  # a file on the way, no permission, a full disk: the path is the user's to fix
            raise _cannot_write(path, error) from None
    lines = _jsonl_lines(records)
    sys.stdout.writelines(lines)
    sys.stdout.flush()
    return len(lines)


def read_table(path, columns=None, sep: str | None = None, *, quoting: int | None = None) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_no, row)`` for each data row of a delimited file with a header line.

    ``row`` maps each requested column (all columns when ``columns`` is None) to its cell as a string ("" for an
    empty cell, ``None`` when the row has too few fields). ``sep`` defaults from the extension: ``.tsv``/``.txt``/
    ``.tab`` tab, anything else comma. TSV is read without quote processing (sentences often contain ``"``); CSV
    uses standard quoting, so a quoted cell may span lines (pass ``quoting``, a ``csv.QUOTE_*`` constant, to
    override). ``line_no`` is the 1-based line where the row starts (header = line 1 when the file starts with it);
    blank lines are skipped. Errors: a requested column missing from the header ->
    ``DataError(path, 1, column, "no such column; columns are ...")``; a row with more fields than the header, or a
    malformed CSV row -> ``DataError`` naming its line.

    (Read with the standard ``csv`` module rather than pandas: it is as fast here and reports exact line numbers.)
    """
    suffix = Path(path).suffix.lower()
    if sep is None:
        sep = "\t" if suffix in (".tsv", ".txt", ".tab") else ","
    if quoting is None:
        quoting = csv.QUOTE_NONE if sep == "\t" else csv.QUOTE_MINIMAL
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline="\n"), delimiter=sep, quoting=quoting, strict=True)
    header = None
    header_line = 1
    line_no = 1  # line where the next row starts
    while True:
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise DataError(path, line_no, None, f"malformed row: {e}") from None
        row_line, line_no = line_no, reader.line_num + 1
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue  # blank line
        if header is None:
            header, header_line = [c.strip() for c in fields], row_line
            wanted = header if columns is None else list(columns)
            for column in wanted:
                if column not in header:
                    raise DataError(path, header_line, column,
                                    f"no such column; columns are {', '.join(map(repr, header))}")
            positions = [header.index(c) for c in wanted]
            continue
        if len(fields) > len(header):
            raise DataError(path, row_line, None,
                            f"{len(fields)} fields but the header has {len(header)} (a stray separator?)")
        yield row_line, {c: (fields[i] if i < len(fields) else None) for c, i in zip(wanted, positions)}
    if header is None:
        raise DataError(path, 1, None, "empty file; expected a header line")


_KIND_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true/false", list: "a list",
               dict: "an object"}


def _kind_name(kind) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(_KIND_NAMES.get(k, k.__name__) for k in kinds)


def require(record, field: str, path, line: int | None, kind=str, allow_empty: bool = False):
    """Return ``record[field]``, checked; otherwise raise ``DataError(path, line, field, ...)``.

    Missing or ``None`` -> "missing". ``kind`` (a type or tuple of types; ``None`` skips the check) must match;
    ``bool`` never passes for ``int``, while an ``int`` passes for ``float``. Unless ``allow_empty``, an empty
    string (or whitespace only), list or dict -> "empty".
    """
    if not isinstance(record, dict) and not hasattr(record, "get"):
        raise DataError(path, line, field, f"expected a record, got {type(record).__name__}")
    value = record.get(field)
    if value is None:
        raise DataError(path, line, field, "missing")
    if kind is not None:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        ok = isinstance(value, kinds)
        if ok and isinstance(value, bool) and bool not in kinds:
            ok = False
        if not ok and float in kinds and isinstance(value, int) and not isinstance(value, bool):
            ok = True
        if not ok:
            raise DataError(path, line, field, f"expected {_kind_name(kind)}, got {type(value).__name__} {value!r:.60}")
    if not allow_empty:
        if isinstance(value, str) and not value.strip():
            raise DataError(path, line, field, "empty")
        if isinstance(value, (list, dict, tuple)) and len(value) == 0:
            raise DataError(path, line, field, "empty")
    return value
