"""Write tests/data/torch_fixtures/: small files written by real torch / transformers, for tests/test_convert_hf.py to
check that bertkit reads them without torch.

* ``tensors.pt``: ``torch.save`` of a state dict with float32/float16/bfloat16/int64/bool tensors, transposed and
  sliced views, two tensors sharing one storage, an ``nn.Parameter``, a 0-d and an empty tensor, and the
  ``_metadata`` attribute real ``state_dict()``s carry; ``tensors.npz``: the same values as numpy (bfloat16 as
  float32, which is exact).
* ``legacy.pt``: the same dict in torch's legacy (pre-1.6, non-zip) format, which bertkit refuses with a clear error.
* ``tiny_bert/``: a random 2-layer BERT (hidden 16) saved by transformers as ``config.json`` + ``pytorch_model.bin``
  (``safe_serialization=False``) + ``tokenizer.json`` (no ``vocab.txt``) + ``tokenizer_config.json``;
  ``tiny_bert_reference.npz``: ``BertModel``'s last hidden states for a padded batch with a text pair, and the
  ``BertTokenizerFast`` ids of a few sentences.

Not run by CI (it needs torch). Run it once in a throw-away virtualenv outside the repository:

    python3.11 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch==2.13.0 transformers==4.46.3 tokenizers==0.20.3 numpy==1.26.4
    /tmp/torchenv/bin/python tests/data/make_torch_fixtures.py
"""

from __future__ import annotations

import argparse
import collections
import json
import shutil
import string
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "torch_fixtures"
TINY_WORDS = "the a is of and to in it was for on with as by this that he she they we model test text word play".split()
TINY_SENTENCES = ["The model was a test.", "Playing with words, she played!", "Tëst ÀCCENTS and UNKNOWN ∆ symbols"]


def tiny_vocab() -> list[str]:
    tokens = ["[PAD]", "[unused1]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tokens += list(string.punctuation) + list(string.digits) + list(string.ascii_lowercase)
    tokens += ["##" + c for c in string.ascii_lowercase] + TINY_WORDS + ["##ing", "##ed", "##s"]
    return list(dict.fromkeys(tokens))


def write_tensors(out: Path) -> None:
    import torch

    torch.manual_seed(0)
    base = torch.randn(3, 4)
    shared = torch.arange(10, dtype=torch.float32)
    state = collections.OrderedDict(
        float32=base,
        transposed=base.t(),
        sliced=base[1:, 2:],
        shared_head=shared[:4],
        shared_tail=shared[6:],
        float16=torch.randn(5).half(),
        bfloat16=torch.tensor([1.5, -2.25, 3.0e38, 1e-3], dtype=torch.bfloat16),
        int64=torch.arange(6).reshape(2, 3),
        boolean=torch.tensor([True, False, True]),
        parameter=torch.nn.Parameter(torch.randn(2, 2)),
        scalar=torch.tensor(7.5),
        empty=torch.zeros(0, 3),
    )
    state._metadata = collections.OrderedDict({"": {"version": 1}})
    torch.save(state, out / "tensors.pt")
    torch.save(state, out / "legacy.pt", _use_new_zipfile_serialization=False)
    expected = {name: (t.detach().float() if t.dtype == torch.bfloat16 else t.detach()).numpy()
                for name, t in state.items()}
    np.savez_compressed(out / "tensors.npz", **expected)


def write_tiny_bert(out: Path) -> None:
    import torch
    from tokenizers.implementations import BertWordPieceTokenizer
    from torch_reference import bert_reference  # a sibling: this script runs as a file
    from transformers import BertConfig, BertModel, BertTokenizerFast

    torch.manual_seed(1)
    vocab = tiny_vocab()
    config = BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=64, hidden_act="gelu")
    model = BertModel(config).eval()
    with torch.no_grad():  # larger than the default init so the layers (and the exact GELU) matter
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
    folder = out / "tiny_bert"
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder, safe_serialization=False)
    wordpiece = BertWordPieceTokenizer({token: i for i, token in enumerate(vocab)}, lowercase=True)
    fast = BertTokenizerFast(tokenizer_object=wordpiece._tokenizer, do_lower_case=True)
    fast.save_pretrained(folder)
    for extra in ("vocab.txt", "special_tokens_map.json"):
        (folder / extra).unlink(missing_ok=True)  # the vocabulary must come from tokenizer.json
    reloaded = BertTokenizerFast.from_pretrained(folder)
    token_ids, segment_ids, mask, hidden = bert_reference(
        reloaded, model, [("The model is a test.", None), ("Playing with words,", "she played the model!")])
    sentence_ids = [reloaded(text)["input_ids"] for text in TINY_SENTENCES]
    np.savez_compressed(out / "tiny_bert_reference.npz", token_ids=token_ids, segment_ids=segment_ids, mask=mask,
                        hidden=hidden.astype(np.float32),
                        sentences=np.array(json.dumps({"texts": TINY_SENTENCES, "ids": sentence_ids})))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    write_tensors(args.out)
    write_tiny_bert(args.out)
    files = sorted(p for p in args.out.rglob("*") if p.is_file())
    total = sum(p.stat().st_size for p in files)
    print(f"wrote {args.out}: {', '.join(str(p.relative_to(args.out)) for p in files)} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
