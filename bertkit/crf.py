"""A linear-chain CRF layer over per-position tag scores (emissions), on tensorflow-addons or in pure TensorFlow.

The layer owns the tag-transition matrix ``transitions[i, j]`` (score of tag ``j`` following tag ``i``): a trained
weight, saved with the model's weights and exported with it. A tag path ``y_0 .. y_{n-1}`` of a row of length ``n``
scores

    score(y) = sum_t emissions[t, y_t] + sum_{t>=1} transitions[y_{t-1}, y_t]

with no start or end transitions (the path starts and ends anywhere, as in ``tfa.text``). ``log_likelihood`` is the
training objective ``score(gold) - log Z`` with ``log Z = logsumexp_y score(y)`` over all ``num_tags ** n`` paths
(forward algorithm); ``decode`` is the Viterbi path ``argmax_y score(y)``. Positions at or beyond a row's length are
ignored by both, so padding never influences the loss or the decoded tags; a row of length 0 has log-likelihood 0,
score 0 and decodes to zeros.

Two backends compute the same numbers (see ``tests/test_crf.py``):

- ``"tfa"``: ``tfa.text.crf_log_likelihood`` / ``tfa.text.crf_decode``. Its ops do not compile under XLA.
- ``"pure"``: ``crf_log_likelihood`` / ``crf_decode`` below (same arguments as tfa's), plain TensorFlow ops
  (``tf.scan``); compiles under XLA (``tf.function(jit_compile=True)``) and needs no tensorflow-addons, which has no
  wheels for Python >= 3.12 and does not support TensorFlow >= 2.16.

``select_backend`` makes the choice, once per layer, when the layer is created: the ``backend=`` argument, else the
environment variable ``BERTKIT_CRF`` (``tfa``, ``pure`` or ``auto``), else ``auto`` = tfa where importable, pure
elsewhere. The weights are the same variable under both, so a model trained on one backend loads on the other.
"""

from __future__ import annotations

import functools
import itertools
import os
import warnings

import numpy as np
import tensorflow as tf

from bertkit.errors import ConfigError

__all__ = ["BACKENDS", "BACKEND_ENV", "CRF", "brute_force_decode", "brute_force_log_likelihood", "crf_decode",
           "crf_log_likelihood", "select_backend", "sequence_score", "tfa_available"]

BACKENDS = ("tfa", "pure")
BACKEND_ENV = "BERTKIT_CRF"


# ---------------------------------------------------------------------------------------------------------- backend
@functools.lru_cache(maxsize=1)
def _import_tfa():
    """``(module, None)`` when tensorflow_addons imports, else ``(None, reason)``; tried once per process."""
    try:
        with warnings.catch_warnings():  # tfa warns of its own end of life on import: nothing a user can fix
            warnings.filterwarnings("ignore", category=UserWarning, module="tensorflow_addons")
            import tensorflow_addons as tfa
    except Exception as error:   # not installed, or installed but broken against this TensorFlow
        return None, f"{type(error).__name__}: {error}"
    return tfa, None


def tfa_available() -> bool:
    """Whether tensorflow_addons can be imported here (imports it on the first call)."""
    return _import_tfa()[0] is not None


def select_backend(backend: str | None = None) -> str:
    """The CRF backend to use, ``"tfa"`` or ``"pure"``.

    ``backend`` (``"tfa"``, ``"pure"``, ``"auto"`` or ``None``) wins; ``None`` reads ``$BERTKIT_CRF`` (unset or empty
    means ``auto``). ``auto`` is tfa where tensorflow_addons imports, pure elsewhere. Asking for ``tfa`` where it does
    not import, or for an unknown backend, is a ``ConfigError``.
    """
    source = "backend="
    if backend is None:
        backend, source = os.environ.get(BACKEND_ENV, "").strip(), f"{BACKEND_ENV}="
    choice = (backend or "auto").lower()
    if choice not in BACKENDS + ("auto",):
        raise ConfigError(f"{source}{backend!r}: the CRF backend must be one of tfa, pure, auto")
    if choice == "auto":
        return "tfa" if tfa_available() else "pure"
    if choice == "tfa" and not tfa_available():
        raise ConfigError(f"{source}tfa: tensorflow_addons cannot be imported ({_import_tfa()[1]}); install "
                          f"tensorflow-addons (Python < 3.12, TensorFlow < 2.16) or use {BACKEND_ENV}=pure")
    return choice


# ----------------------------------------------------------------------------------------------------------- layer
class CRF(tf.keras.layers.Layer):
    """Transition scores between ``num_tags`` tags; ``call(emissions, lengths)`` returns the Viterbi tags.

    ``emissions``: ``(batch, steps, num_tags)`` scores; ``lengths``: ``(batch,)`` valid steps per row. The layer
    computes in float32 whatever the mixed-precision policy, since the forward algorithm sums many scores.

    ``lr_multiplier``: the stored weight is ``transitions / lr_multiplier``, so an Adam-type optimizer moves the
    transitions ``lr_multiplier`` times faster than the encoder. Fine-tuning learning rates (~5e-5) would leave a
    freshly initialised transition matrix almost where it started.

    ``backend``: ``"tfa"``, ``"pure"``, ``"auto"`` or ``None`` (read ``$BERTKIT_CRF``), resolved once here by
    ``select_backend``; the resolved one is ``self.backend``.
    """

    def __init__(self, num_tags: int, *, lr_multiplier: float = 1.0, initializer="glorot_uniform",
                 backend: str | None = None, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.num_tags = int(num_tags)
        self.lr_multiplier = float(lr_multiplier)
        self.initializer = tf.keras.initializers.get(initializer)
        self.requested_backend = backend
        self.backend = select_backend(backend)

    def build(self, input_shape=None):
        init = self.initializer
        scale = 1.0 / self.lr_multiplier
        self.scaled_transitions = self.add_weight(
            name="transitions", shape=(self.num_tags, self.num_tags), trainable=True,
            initializer=lambda shape, dtype=None: init(shape, dtype=dtype) * scale)
        super().build(input_shape)

    @property
    def xla_refusal(self) -> str | None:
        """Why a train step holding this layer cannot be XLA-compiled (``Trainer``'s ``--train-step xla``), or
        ``None``: tfa's CRF ops have no XLA kernels."""
        if self.backend == "tfa":
            return f"tensorflow-addons' CRF ops do not compile under XLA; {BACKEND_ENV}=pure selects bertkit's own"
        return None

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
        tags, lengths = tf.cast(tags, tf.int32), tf.cast(lengths, tf.int32)
        if self.backend == "pure":
            return crf_log_likelihood(emissions, tags, lengths, self.transitions)
        log_likelihood, _ = _import_tfa()[0].text.crf_log_likelihood(emissions, tags, lengths, self.transitions)
        return log_likelihood

    def decode(self, emissions, lengths):
        """``(tags, scores)``: the best tag path ``(batch, steps)`` int32 (0 beyond each length) and its score
        (0 for a row of length 0)."""
        self._ensure_built()
        emissions = tf.cast(emissions, tf.float32)
        lengths = tf.cast(lengths, tf.int32)
        if self.backend == "pure":
            return crf_decode(emissions, self.transitions, lengths)
        tags, scores = _import_tfa()[0].text.crf_decode(emissions, self.transitions, lengths)
        # crf_decode leaves arbitrary tags beyond the length and scores an empty row by its first step: zero both.
        mask = tf.sequence_mask(lengths, tf.shape(tags)[1])
        return tf.where(mask, tags, tf.zeros_like(tags)), tf.where(lengths > 0, scores, tf.zeros_like(scores))

    def call(self, emissions, lengths):
        return self.decode(emissions, lengths)[0]

    def get_config(self):
        config = super().get_config()
        config.update(num_tags=self.num_tags, lr_multiplier=self.lr_multiplier,
                      initializer=tf.keras.initializers.serialize(self.initializer),
                      backend=self.requested_backend)   # what was asked (None: decide where it is loaded)
        return config


# ------------------------------------------------------------------------------------------------ pure TensorFlow
def _time_major(tensor):
    """``(batch, steps, ...)`` -> ``(steps, batch, ...)``, the layout ``tf.scan`` iterates over."""
    rank = len(tensor.shape)
    return tf.transpose(tensor, [1, 0] + list(range(2, rank)))


def _prepare(emissions, lengths, transitions):
    emissions = tf.convert_to_tensor(emissions, tf.float32)
    transitions = tf.convert_to_tensor(transitions, tf.float32)
    steps = tf.shape(emissions)[1]
    lengths = tf.clip_by_value(tf.cast(lengths, tf.int32), 0, steps)
    return emissions, lengths, transitions, tf.sequence_mask(lengths, steps)


def crf_log_likelihood(emissions, tags, lengths, transitions):
    """Log-likelihood ``(batch,)`` of ``tags`` ``(batch, steps)``: ``score(tags) - log Z``, in plain TensorFlow.

    ``log Z`` by the forward algorithm: ``alpha_0 = emissions[0]``,
    ``alpha_t[j] = emissions[t, j] + logsumexp_i(alpha_{t-1}[i] + transitions[i, j])``, and
    ``log Z = logsumexp_j alpha_{length-1}[j]`` (0 for an empty row): every row runs all steps, and each reads its
    own ``alpha_{length-1}``, so padding changes neither the value nor, as it only feeds later alphas, the gradient.
    Tags beyond a row's length are ignored (they may be any value, e.g. -1 padding). Same numbers as
    ``tfa.text.crf_log_likelihood``; differentiable and XLA-compilable.
    """
    emissions, lengths, transitions, mask = _prepare(emissions, lengths, transitions)
    tags = tf.where(mask, tf.cast(tags, tf.int32), 0)
    weights = tf.cast(mask, tf.float32)
    # score(tags): emissions along the path + transitions between consecutive real steps
    unary = tf.gather(emissions, tags[:, :, None], batch_dims=2)[:, :, 0]
    pairs = tf.stack([tags[:, :-1], tags[:, 1:]], axis=-1)
    binary = tf.gather_nd(transitions, pairs)
    path_score = tf.reduce_sum(unary * weights, 1) + tf.reduce_sum(binary * weights[:, 1:], 1)

    def forward_step(alpha, emission):   # alpha[:, :, None] + transitions[None]: (batch, previous tag, tag)
        return emission + tf.reduce_logsumexp(alpha[:, :, None] + transitions[None], axis=1)

    first = emissions[:, 0]
    alphas = tf.scan(forward_step, _time_major(emissions[:, 1:]), initializer=first)
    alphas = tf.concat([first[None], alphas], axis=0)   # (steps, batch, tags)
    # each row's alpha at its last real step (reading it there is cheaper than masking every step: ~20 % per step)
    last_alpha = tf.gather(_time_major(alphas), tf.maximum(lengths - 1, 0)[:, None], batch_dims=1)[:, 0]
    log_norm = tf.where(lengths > 0, tf.reduce_logsumexp(last_alpha, axis=1), 0.0)
    return path_score - log_norm


def crf_decode(emissions, transitions, lengths):
    """Viterbi ``(tags, scores)`` in plain TensorFlow: the best path ``(batch, steps)`` int32 (0 beyond each length,
    all 0 for an empty row) and its score ``(batch,)`` (0 for an empty row).

    Forward: ``delta_0 = emissions[0]``, ``delta_t[j] = emissions[t, j] + max_i(delta_{t-1}[i] + transitions[i, j])``
    with back-pointer ``back_t[j] = argmax_i(...)`` (first maximum on ties, as tfa). Steps beyond a row's length keep
    ``delta`` and get the identity back-pointer, so backtracking from the last step passes through the padding
    unchanged to ``argmax_j delta_{length-1}[j]`` and then follows the back-pointers. XLA-compilable.
    """
    emissions, lengths, transitions, mask = _prepare(emissions, lengths, transitions)
    batch, num_tags = tf.shape(emissions)[0], tf.shape(transitions)[0]
    identity = tf.broadcast_to(tf.range(num_tags)[None], [batch, num_tags])

    def viterbi_step(carry, step):
        delta, _ = carry
        emission, valid = step
        candidates = delta[:, :, None] + transitions[None]   # (batch, previous tag, tag)
        new_delta = emission + tf.reduce_max(candidates, axis=1)
        back = tf.argmax(candidates, axis=1, output_type=tf.int32)
        valid = valid[:, None]
        return tf.where(valid, new_delta, delta), tf.where(valid, back, identity)

    first = emissions[:, 0]
    deltas, backs = tf.scan(viterbi_step, (_time_major(emissions[:, 1:]), _time_major(mask[:, 1:])),
                            initializer=(first, identity))
    last_delta = tf.concat([first[None], deltas], axis=0)[-1]
    last_tag = tf.argmax(last_delta, axis=1, output_type=tf.int32)

    def backtrack_step(tag, back):   # tag at step t and back_t -> tag at step t-1
        return tf.gather(back, tag[:, None], batch_dims=1)[:, 0]

    earlier = tf.scan(backtrack_step, backs, initializer=last_tag, reverse=True)   # (steps-1, batch): steps 0..-2
    tags = tf.concat([tf.transpose(earlier), last_tag[:, None]], axis=1)
    tags = tf.where(mask, tags, tf.zeros_like(tags))
    scores = tf.where(lengths > 0, tf.reduce_max(last_delta, axis=1), 0.0)
    return tags, scores


# ----------------------------------------------------------------------------------------- references for tests
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


def brute_force_log_likelihood(emissions: np.ndarray, transitions: np.ndarray, tags) -> float:
    """``score(tags) - log sum_y exp(score(y))`` over every one of ``num_tags ** steps`` paths (reference for tests;
    tiny inputs only). ``emissions`` holds exactly the row's real steps; an empty row has log-likelihood 0."""
    steps, num_tags = emissions.shape
    if steps == 0:
        return 0.0
    scores = np.array([sequence_score(emissions, transitions, path)
                       for path in itertools.product(range(num_tags), repeat=steps)], np.float64)
    top = scores.max()
    return sequence_score(emissions, transitions, list(tags)) - float(top + np.log(np.exp(scores - top).sum()))
