"""Extract (subject, predicate, object) triples with a finished run: JSONL in ({"id"?, "text"}) or one text per
line, JSONL out ({"id"?, "text", "spo_list": [{"subject", "predicate", "object", "subject_start", "subject_end",
"object_start", "object_end"}]}, the recipe's own input form with character offsets into "text", end exclusive).

    python recipes/relation_extract/predict.py --run-dir runs/relation_extract/RUN --input texts.txt \\
        --output triples.jsonl
    echo "John Smith works for IBM ." | python recipes/relation_extract/predict.py --run-dir runs/relation_extract/RUN
    python recipes/relation_extract/predict.py --run-dir runs/relation_extract/RUN \\
        --export runs/relation_extract/RUN/export

The thresholds are the run's (run_config.json head.thresholds).
"""

from bertkit.cli import exit_process
from bertkit.recipe import predict_main

if __name__ == "__main__":
    exit_process(predict_main(__file__))
