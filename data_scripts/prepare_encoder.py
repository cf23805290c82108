"""Prepare a pre-trained encoder and show that it works: convert, load, encode one sentence.

    python data_scripts/prepare_encoder.py                      # the default encoder (all-MiniLM-L6-v2), cached
    python data_scripts/prepare_encoder.py --from HF_DIR --to OUT_DIR    # any Hugging Face BERT safetensors dir
    python data_scripts/prepare_encoder.py --bert-dir uncased_L-12_H-768_A-12   # just check a Google BERT dir

Prints the tokens, ids and character offsets of a sample sentence and the encoder's hidden states for it.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from bertkit.cli import run_main

SAMPLE = "Keras makes BERT fine-tuning easy, even on a 2-core CPU!"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--from", dest="source", metavar="HF_DIR",
                        help="Hugging Face BERT dir (config.json, model.safetensors, vocab.txt) to convert")
    source.add_argument("--bert-dir", help="an existing Google-format BERT dir to check and load")
    parser.add_argument("--to", metavar="OUT_DIR", help="where --from writes the Google-format dir")
    parser.add_argument("--text", default=SAMPLE, help="sentence to encode (default: %(default)r)")
    parser.add_argument("--text-b", default=None, help="optional second text (a pair, segment 1)")
    return parser


def run(args) -> None:
    from bertkit.convert import convert_safetensors_to_google
    from bertkit.encoder import default_bert_dir, load_encoder, validate_bert_dir
    from bertkit.errors import ConfigError
    from bertkit.tokenization import Tokenizer

    start = time.perf_counter()
    if args.source:
        if not args.to:
            raise ConfigError("--from needs --to OUT_DIR (where to write the converted checkpoint)")
        bert_dir = convert_safetensors_to_google(args.source, args.to)
    elif args.to:
        raise ConfigError("--to is only used with --from HF_DIR")
    else:
        bert_dir = args.bert_dir or default_bert_dir()
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
