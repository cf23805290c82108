"""Answer questions with a trained span_extract run: JSONL in, JSONL out (answer text, character offsets, score).

    python recipes/span_extract/predict.py --run-dir runs/span_extract/RUN --input questions.jsonl --output answers.jsonl
    echo '{"question": "How is the parking?", "context": "Parking was $35 per night."}' | \
        python recipes/span_extract/predict.py --run-dir runs/span_extract/RUN
    python recipes/span_extract/predict.py --run-dir runs/span_extract/RUN --export runs/span_extract/RUN/export

Input records: ``{"question", "context"}`` (``id`` optional; the event-subject form ``{"event_type", "text"}`` too),
or plain text lines ``question<TAB>context``. Output: ``id`` (when given), ``answer`` (exactly
``context[answer_start:answer_end]``), ``answer_start``, ``answer_end`` (character offsets, end exclusive; -1 and ""
when a ``--no-answer`` run abstains), ``score`` (start logit + end logit of the span) and, in ``--no-answer`` runs,
``null_margin``. Long contexts are windowed like in training; the best window wins.
"""

from bertkit.cli import exit_process
from bertkit.recipe import predict_main

if __name__ == "__main__":
    exit_process(predict_main(__file__))
