"""The torch side of the reference scripts in this folder (run by hand in a venv with torch and transformers, never
by CI): encode texts and text pairs with a Hugging Face tokenizer, pad them, and run a BertModel on them."""

from __future__ import annotations

import numpy as np


def bert_reference(tokenizer, model, sentences) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(token_ids, segment_ids, mask, last_hidden_state)`` of ``sentences`` (``(text, text_b or None)`` pairs),
    padded with 0 to the longest; int32 ids and mask, float32 hidden states."""
    import torch

    encoded = [tokenizer(a, b) if b is not None else tokenizer(a) for a, b in sentences]
    length = max(len(e["input_ids"]) for e in encoded)
    token_ids = np.zeros((len(encoded), length), np.int32)
    segment_ids = np.zeros_like(token_ids)
    for row, enc in enumerate(encoded):
        token_ids[row, : len(enc["input_ids"])] = enc["input_ids"]
        segment_ids[row, : len(enc["token_type_ids"])] = enc["token_type_ids"]
    mask = (token_ids != 0).astype(np.int32)
    with torch.no_grad():
        hidden = model(
            input_ids=torch.tensor(token_ids, dtype=torch.long),
            token_type_ids=torch.tensor(segment_ids, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
        ).last_hidden_state.numpy().astype(np.float32)
    return token_ids, segment_ids, mask, hidden
