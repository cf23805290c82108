"""bertkit.errors and bertkit.fileio: error messages, atomic writes, readers that name file/line/field."""

import json

import numpy as np
import pytest

from bertkit.errors import BertkitError, CheckpointError, ConfigError, DataError
from bertkit.fileio import (
    atomic_dir, atomic_write_bytes, atomic_write_json, atomic_write_text, check_destination, iter_jsonl, parse_jsonl,
    read_input, read_json, read_table, read_text, require, write_jsonl, write_jsonl_output, write_splits,
)


def test_error_messages():
    e = DataError("corpus/train.jsonl", 12, "label", "missing")
    assert str(e) == "corpus/train.jsonl:12: field 'label': missing"
    assert (e.path, e.line, e.field) == ("corpus/train.jsonl", 12, "label")
    assert str(DataError("a.txt", None, None, "no such file")) == "a.txt: no such file"
    assert str(DataError("a.txt", 3, None, "bad")) == "a.txt:3: bad"
    assert str(CheckpointError("/ckpt", "missing vocab.txt")) == "/ckpt: missing vocab.txt"
    assert str(ConfigError("--lr: must be positive")) == "--lr: must be positive"
    for e in (DataError("p", 1, "f", "m"), ConfigError("m"), CheckpointError("p", "m")):
        assert isinstance(e, BertkitError)


def test_atomic_writes(tmp_path):
    p = atomic_write_text(tmp_path / "sub" / "a.txt", "héllo\n")
    assert p.read_bytes() == "héllo\n".encode()
    atomic_write_text(p, "second")
    assert p.read_text() == "second"
    atomic_write_bytes(tmp_path / "b.bin", b"\x00\xff")
    assert (tmp_path / "b.bin").read_bytes() == b"\x00\xff"
    atomic_write_json(tmp_path / "c.json", {"x": np.float32(0.5), "a": np.arange(3), "p": tmp_path / "q", "é": 1})
    assert json.loads((tmp_path / "c.json").read_text("utf-8")) == {"x": 0.5, "a": [0, 1, 2], "p": str(tmp_path / "q"),
                                                                      "é": 1}
    # no temp files left behind
    assert sorted(f.name for f in tmp_path.iterdir()) == ["b.bin", "c.json", "sub"]
    assert [f.name for f in (tmp_path / "sub").iterdir()] == ["a.txt"]


def test_atomic_write_failure_keeps_old_file(tmp_path):
    p = atomic_write_json(tmp_path / "r.json", {"ok": 1})
    with pytest.raises(TypeError):
        atomic_write_json(p, {"bad": object()})
    assert json.loads(p.read_text()) == {"ok": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["r.json"]


def test_atomic_dir_replaces_whole_directory(tmp_path):
    target = tmp_path / "model"
    with atomic_dir(target) as d:
        (d / "a").write_text("1")
        assert not target.exists()
    assert (target / "a").read_text() == "1"
    with atomic_dir(target) as d:
        (d / "b").write_text("2")
    assert sorted(f.name for f in target.iterdir()) == ["b"]
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as d:
            (d / "c").write_text("3")
            raise RuntimeError("boom")
    assert sorted(f.name for f in target.iterdir()) == ["b"]
    assert [f.name for f in tmp_path.iterdir()] == ["model"]


def test_read_text_utf8_errors(tmp_path):
    p = tmp_path / "t.txt"
    p.write_bytes("line one\nline two\r\nbad \xe9 here\n".encode("latin-1"))
    with pytest.raises(DataError) as info:
        read_text(p)
    assert info.value.line == 3 and info.value.field == "encoding"
    assert str(info.value).startswith(f"{p}:3: field 'encoding': not valid UTF-8 (byte 0xe9 at column 5)")
    p.write_bytes(b"\xef\xbb\xbfhi\r\nthere\r")
    assert read_text(p) == "hi\nthere\n"
    with pytest.raises(DataError, match="no such file"):
        read_text(tmp_path / "nope.txt")


def test_check_destination_refuses_what_could_not_be_written_and_creates_nothing(tmp_path):
    (tmp_path / "plain.txt").write_text("a file")
    (tmp_path / "folder").mkdir()
    for path, directory, why in [(tmp_path / "plain.txt" / "deeper" / "out.jsonl", False, "not a directory"),
                                 (tmp_path / "plain.txt" / "export", True, "not a directory"),
                                 (tmp_path / "folder", False, "is a directory"),
                                 (tmp_path / "plain.txt", True, "a file is in the way")]:
        with pytest.raises(DataError, match=why) as caught:
            check_destination(path, directory=directory)
        assert str(path) in str(caught.value)
    for path, directory in [(tmp_path / "new" / "deeper" / "out.jsonl", False), (tmp_path / "plain.txt", False),
                            (tmp_path / "folder", True), (tmp_path / "folder" / "export", True)]:
        assert check_destination(path, directory=directory) == path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "plain.txt"]  # nothing created
    assert (tmp_path / "plain.txt").read_text() == "a file" and not any((tmp_path / "folder").iterdir())


def test_iter_jsonl(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"a": 1}\n\n  \n{"a": 2}\n', encoding="utf-8")
    assert list(iter_jsonl(p)) == [(1, {"a": 1}), (4, {"a": 2})]
    p.write_text('{"a": 1}\n{"a": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"d.jsonl:2: malformed JSON"):
        list(iter_jsonl(p))
    p.write_text('{"a": 1}\n[1, 2]\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"d.jsonl:2: expected a JSON object, got list"):
        list(iter_jsonl(p))



def test_read_json_names_the_line_of_malformed_json(tmp_path):
    p = tmp_path / "d.json"
    p.write_bytes('\ufeff[\r\n  {"text": "é"},\r\n  {"text": 2}\r\n]\r\n'.encode("utf-8"))
    assert read_json(p) == [{"text": "é"}, {"text": 2}]
    p.write_text('[\n  {"text": "a"},\n  {"text": }\n]\n', encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_json(p)
    assert (info.value.line, info.value.field) == (3, None)
    assert str(info.value) == f"{p}:3: malformed JSON: Expecting value"
    with pytest.raises(DataError, match=r"nope.json: no such file$"):
        read_json(tmp_path / "nope.json")


def test_write_jsonl_and_write_splits(tmp_path):
    records = [{"text": "é 中", "p": np.float32(0.5)}, {"text": "b", "spo_list": []}]
    assert write_jsonl(tmp_path / "a.jsonl", iter(records)) == 2
    assert (tmp_path / "a.jsonl").read_bytes() == '{"text": "é 中", "p": 0.5}\n{"text": "b", "spo_list": []}\n'.encode()
    assert write_jsonl(tmp_path / "empty.jsonl", []) == 0
    assert (tmp_path / "empty.jsonl").read_bytes() == b""

    out = tmp_path / "data" / "set"  # created, parents and all
    counts = write_splits(out, {"train": [{"a": 1}, {"a": 2}], "test": [{"a": "ü"}]}, "# Set\n\nFrom upstream.\n")
    assert counts == {"train": 2, "test": 1}
    assert (out / "train.jsonl").read_text("utf-8") == '{"a": 1}\n{"a": 2}\n'
    assert (out / "test.jsonl").read_bytes() == '{"a": "ü"}\n'.encode()
    assert (out / "SOURCE.md").read_bytes() == b"# Set\n\nFrom upstream.\n"
    # rewriting replaces the files; no temporary file is left anywhere
    assert write_splits(out, {"train": [{"a": 3}]}, "# Set v2\n") == {"train": 1}
    assert (out / "train.jsonl").read_text("utf-8") == '{"a": 3}\n'
    assert sorted(f.name for f in out.iterdir()) == ["SOURCE.md", "test.jsonl", "train.jsonl"]
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.jsonl", "data", "empty.jsonl"]


def test_write_jsonl_failure_keeps_old_file(tmp_path):
    p = tmp_path / "a.jsonl"
    write_jsonl(p, [{"ok": 1}])
    with pytest.raises(TypeError):
        write_jsonl(p, [{"ok": 2}, {"bad": object()}])
    assert p.read_text("utf-8") == '{"ok": 1}\n'
    assert [f.name for f in tmp_path.iterdir()] == ["a.jsonl"]

def test_read_table(tmp_path):
    tsv = tmp_path / "t.tsv"
    tsv.write_text('sentence\tlabel\nhe said "hi\t1\n\nNA\t0\n', encoding="utf-8")
    rows = list(read_table(tsv, ["sentence", "label"]))
    assert rows == [(2, {"sentence": 'he said "hi', "label": "1"}), (4, {"sentence": "NA", "label": "0"})]
    with pytest.raises(DataError) as info:
        list(read_table(tsv, ["text"]))
    assert str(info.value) == f"{tsv}:1: field 'text': no such column; columns are 'sentence', 'label'"
    csv_path = tmp_path / "t.csv"
    csv_path.write_text('a,b\n"x, y",2\n3,\n', encoding="utf-8")
    assert list(read_table(csv_path, ["a", "b"])) == [(2, {"a": "x, y", "b": "2"}), (3, {"a": "3", "b": ""})]
    assert list(read_table(csv_path)) == [(2, {"a": "x, y", "b": "2"}), (3, {"a": "3", "b": ""})]
    # a quoted cell spanning lines: the next row's line number stays exact
    csv_path.write_text('a,b\n"multi\nline ""cell""",1\n\nnext,2\n', encoding="utf-8")
    assert list(read_table(csv_path, ["b", "a"])) == [(2, {"b": "1", "a": 'multi\nline "cell"'}),
                                                       (5, {"b": "2", "a": "next"})]
    csv_path.write_text('a,b\n"x"y,1\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"t.csv:2: malformed row"):
        list(read_table(csv_path))
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\n1\t2\n1\t2\t3\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.tsv:3: 3 fields but the header has 2"):
        list(read_table(bad, ["a"]))
    bad.write_text("a\tb\n1\n", encoding="utf-8")
    assert list(read_table(bad)) == [(2, {"a": "1", "b": None})]
    bad.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad.tsv:1: empty file"):
        list(read_table(bad))
    bad.write_bytes(b"a\tb\n1\t\xff\n")
    with pytest.raises(DataError, match=r"bad.tsv:2: field 'encoding'"):
        list(read_table(bad, ["a"]))


def test_require():
    rec = {"text": "hi", "n": 3, "flag": True, "x": 1, "blank": "  ", "tags": []}
    assert require(rec, "text", "f", 7) == "hi"
    assert require(rec, "n", "f", 7, kind=int) == 3
    assert require(rec, "x", "f", 7, kind=float) == 1
    assert require(rec, "blank", "f", 7, allow_empty=True) == "  "
    assert require(rec, "tags", "f", 7, kind=list, allow_empty=True) == []
    with pytest.raises(DataError, match=r"^f:7: field 'label': missing$"):
        require(rec, "label", "f", 7)
    with pytest.raises(DataError, match=r"^f:7: field 'n': expected a string, got int 3$"):
        require(rec, "n", "f", 7)
    with pytest.raises(DataError, match=r"field 'flag': expected an integer"):
        require(rec, "flag", "f", 7, kind=int)
    with pytest.raises(DataError, match=r"field 'blank': empty"):
        require(rec, "blank", "f", 7)
    with pytest.raises(DataError, match=r"field 'tags': empty"):
        require(rec, "tags", "f", 7, kind=list)


def test_predict_io_reads_stdin_and_writes_stdout_or_atomically(tmp_path, monkeypatch, capsys):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO('\ufeff{"text": "a"}\n\n{"text": "b"}\n'))
    text, source = read_input("-")
    assert source == "<stdin>" and parse_jsonl(text, source) == [(1, {"text": "a"}), (3, {"text": "b"})]
    with pytest.raises(DataError, match=r"^<stdin>:2: malformed JSON"):
        parse_jsonl('{"text": "a"}\n{"text": ', "<stdin>")
    (tmp_path / "in.txt").write_bytes(b"x\r\ny\n")
    assert read_input(tmp_path / "in.txt") == ("x\ny\n", str(tmp_path / "in.txt"))

    records = [{"text": "é", "p": np.float32(0.5)}, {"text": "b"}]
    assert write_jsonl_output("-", iter(records)) == 2
    assert capsys.readouterr().out == '{"text": "é", "p": 0.5}\n{"text": "b"}\n'
    assert write_jsonl_output(tmp_path / "out.jsonl", records) == 2
    assert [r for _, r in iter_jsonl(tmp_path / "out.jsonl")] == [{"text": "é", "p": 0.5}, {"text": "b"}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.jsonl"]  # no temporary file left
