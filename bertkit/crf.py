"""A linear-chain CRF layer over per-position tag scores (emissions), on tensorflow-addons.

The layer owns the tag-transition matrix ``transitions[i, j]`` (score of tag ``j`` following tag ``i``): a trained
weight, saved with the model's weights and exported with it. ``log_likelihood`` is the training objective
(``tfa.text.crf_log_likelihood``), ``decode`` the Viterbi path (``tfa.text.crf_decode``). Positions at or beyond a
sequence's length are ignored by both, so padding never influences the loss or the decoded tags.

tfa's CRF ops do not compile under XLA: do not ``jit_compile`` a step that calls them.
"""

from __future__ import annotations

import itertools

import numpy as np
import tensorflow as tf
import tensorflow_addons as tfa

__all__ = ["CRF", "brute_force_decode", "sequence_score"]


class CRF(tf.keras.layers.Layer):
    """Transition scores between ``num_tags`` tags; ``call(emissions, lengths)`` returns the Viterbi tags.

    ``emissions``: ``(batch, steps, num_tags)`` scores; ``lengths``: ``(batch,)`` valid steps per row. The layer
    computes in float32 whatever the mixed-precision policy, since the forward algorithm sums many scores.

    ``lr_multiplier``: the stored weight is ``transitions / lr_multiplier``, so an Adam-type optimizer moves the
    transitions ``lr_multiplier`` times faster than the encoder. Fine-tuning learning rates (~5e-5) would leave a
    freshly initialised transition matrix almost where it started.
    """

    def __init__(self, num_tags: int, *, lr_multiplier: float = 1.0, initializer="glorot_uniform", **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.num_tags = int(num_tags)
        self.lr_multiplier = float(lr_multiplier)
        self.initializer = tf.keras.initializers.get(initializer)

    def build(self, input_shape=None):
        init = self.initializer
        scale = 1.0 / self.lr_multiplier
        self.scaled_transitions = self.add_weight(
            name="transitions", shape=(self.num_tags, self.num_tags), trainable=True,
            initializer=lambda shape, dtype=None: init(shape, dtype=dtype) * scale)
        super().build(input_shape)

    @property
    def transitions(self):
        """The transition scores ``(num_tags, num_tags)``: ``[i, j]`` scores tag ``j`` right after tag ``i``."""
        return self.scaled_transitions * self.lr_multiplier

    def set_transitions(self, matrix) -> None:
        self._ensure_built()
        self.scaled_transitions.assign(np.asarray(matrix, np.float32) / self.lr_multiplier)

    def _ensure_built(self):
        if not self.built:
            self.build(None)

    def log_likelihood(self, emissions, tags, lengths):
        """Per-row log-likelihood ``(batch,)`` of the gold ``tags`` (int, ``(batch, steps)``) under the CRF."""
        self._ensure_built()
        emissions = tf.cast(emissions, tf.float32)
        log_likelihood, _ = tfa.text.crf_log_likelihood(
            emissions, tf.cast(tags, tf.int32), tf.cast(lengths, tf.int32), self.transitions)
        return log_likelihood

    def decode(self, emissions, lengths):
        """``(tags, scores)``: the best tag path ``(batch, steps)`` int32 (0 beyond each length) and its score."""
        self._ensure_built()
        emissions = tf.cast(emissions, tf.float32)
        lengths = tf.cast(lengths, tf.int32)
        tags, scores = tfa.text.crf_decode(emissions, self.transitions, lengths)
        # crf_decode leaves arbitrary tags beyond the length; zero them so padded output is deterministic.
        mask = tf.sequence_mask(lengths, tf.shape(tags)[1])
        return tf.where(mask, tags, tf.zeros_like(tags)), scores

    def call(self, emissions, lengths):
        return self.decode(emissions, lengths)[0]

    def get_config(self):
        config = super().get_config()
        config.update(num_tags=self.num_tags, lr_multiplier=self.lr_multiplier,
                      initializer=tf.keras.initializers.serialize(self.initializer))
        return config


def sequence_score(emissions: np.ndarray, transitions: np.ndarray, tags) -> float:
    """Unnormalised CRF score of one tag path: emissions along the path plus the transitions between its steps."""
    score = float(sum(emissions[t, tag] for t, tag in enumerate(tags)))
    score += float(sum(transitions[a, b] for a, b in zip(tags[:-1], tags[1:])))
    return score


def brute_force_decode(emissions: np.ndarray, transitions: np.ndarray) -> tuple[list[int], float]:
    """Best path by scoring every one of ``num_tags ** steps`` paths (reference for tests; tiny inputs only)."""
    steps, num_tags = emissions.shape
    best = max(itertools.product(range(num_tags), repeat=steps),
               key=lambda path: sequence_score(emissions, transitions, path))
    return list(best), sequence_score(emissions, transitions, best)
