"""bertkit.crf: the pure-TensorFlow CRF against tensorflow-addons' and against brute-force enumeration, gradients,
XLA, and the backend choice (argument, ``BERTKIT_CRF``, auto)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")

from bertkit import crf as crf_module  # noqa: E402
from bertkit.crf import (CRF, brute_force_decode, brute_force_log_likelihood, crf_decode,  # noqa: E402
                         crf_log_likelihood, select_backend, sequence_score, tfa_available)
from bertkit.errors import ConfigError  # noqa: E402

needs_tfa = pytest.mark.skipif(not tfa_available(), reason="tensorflow_addons is not importable here")
BACKENDS = [pytest.param("pure"), pytest.param("tfa", marks=needs_tfa)]


def make_crf(num_tags: int, transitions: np.ndarray, backend: str, lr_multiplier: float = 10.0) -> CRF:
    crf = CRF(num_tags, lr_multiplier=lr_multiplier, backend=backend)
    crf.set_transitions(transitions)
    return crf


def random_case(rng, batch: int, steps: int, num_tags: int, *, empty_rows: bool = False):
    """Random emissions/transitions/tags/lengths; lengths always include 1 and ``steps`` (full) when batch allows.
    Positions beyond a row's length hold large junk emissions and random tags, which must be ignored."""
    emissions = rng.normal(size=(batch, steps, num_tags)).astype(np.float32) * 2
    transitions = rng.normal(size=(num_tags, num_tags)).astype(np.float32) * 2
    lengths = rng.integers(0 if empty_rows else 1, steps + 1, size=batch).astype(np.int32)
    lengths[0] = steps
    if batch > 1:
        lengths[1] = 1
    tags = rng.integers(0, num_tags, size=(batch, steps)).astype(np.int32)
    padding = np.arange(steps)[None, :] >= lengths[:, None]
    emissions[padding] = rng.normal(size=(int(padding.sum()), num_tags)) * 50
    return emissions, transitions, tags, lengths


# ------------------------------------------------------------------------------------------- pure vs tfa (random)
@needs_tfa
@pytest.mark.parametrize("seed", range(6))
def test_pure_equals_tfa_on_random_batches(seed):
    rng = np.random.default_rng(seed)
    shapes = [(1, 1, 3), (3, 1, 4), (5, 2, 2), (4, 7, 5), (6, 13, 9), (8, 32, 30)]
    batch, steps, num_tags = shapes[seed]
    emissions, transitions, tags, lengths = random_case(rng, batch, steps, num_tags, empty_rows=seed % 2 == 1)
    results = {}
    for backend in ("tfa", "pure"):
        crf = make_crf(num_tags, transitions, backend)
        assert crf.backend == backend
        log_likelihood = crf.log_likelihood(tf.constant(emissions), tf.constant(tags), tf.constant(lengths))
        best, scores = crf.decode(tf.constant(emissions), tf.constant(lengths))
        results[backend] = log_likelihood.numpy(), best.numpy(), scores.numpy()
    (ll_tfa, best_tfa, score_tfa), (ll_pure, best_pure, score_pure) = results["tfa"], results["pure"]
    np.testing.assert_allclose(ll_pure, ll_tfa, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(best_pure, best_tfa)
    np.testing.assert_allclose(score_pure, score_tfa, rtol=1e-5, atol=1e-5)
    assert best_pure.dtype == np.int32 and best_pure.shape == (batch, steps)
    assert (ll_pure <= 1e-6).all()   # a log-probability


@needs_tfa
def test_pure_equals_tfa_inside_tf_function_with_unknown_shapes():
    """The recipe decodes through a ``tf.function`` with ``[None, None]`` shapes: same paths and losses there."""
    rng = np.random.default_rng(7)
    emissions, transitions, tags, lengths = random_case(rng, 5, 9, 6)
    spec = [tf.TensorSpec([None, None, 6], tf.float32), tf.TensorSpec([None, None], tf.int32),
            tf.TensorSpec([None], tf.int32)]
    outputs = {}
    for backend in ("tfa", "pure"):
        crf = make_crf(6, transitions, backend)
        run = tf.function(lambda e, t, n, crf=crf: (crf.log_likelihood(e, t, n), crf(e, n)),
                          input_signature=spec, autograph=False)
        outputs[backend] = [x.numpy() for x in run(emissions, tags, lengths)]
    np.testing.assert_allclose(outputs["pure"][0], outputs["tfa"][0], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(outputs["pure"][1], outputs["tfa"][1])


@needs_tfa
def test_pure_gradients_equal_tfa_gradients():
    rng = np.random.default_rng(3)
    emissions, transitions, tags, lengths = random_case(rng, 4, 8, 5)
    gradients = {}
    for backend in ("tfa", "pure"):
        crf = make_crf(5, transitions, backend)
        inputs = tf.constant(emissions)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = -tf.reduce_sum(crf.log_likelihood(inputs, tags, lengths))
        gradients[backend] = [tf.convert_to_tensor(g).numpy()
                              for g in tape.gradient(loss, [crf.scaled_transitions, inputs])]
    for pure, tfa in zip(gradients["pure"], gradients["tfa"]):
        np.testing.assert_allclose(pure, tfa, rtol=1e-4, atol=1e-5)


# --------------------------------------------------------------------------------------------------- brute force
@pytest.mark.parametrize("backend", BACKENDS)
def test_log_likelihood_and_viterbi_equal_brute_force(backend):
    rng = np.random.default_rng(11)
    for case in range(8):
        num_tags, steps = int(rng.integers(2, 5)), int(rng.integers(1, 6))
        emissions, transitions, tags, lengths = random_case(rng, 4, steps, num_tags, empty_rows=True)
        crf = make_crf(num_tags, transitions, backend)
        log_likelihood = crf.log_likelihood(tf.constant(emissions), tf.constant(tags), tf.constant(lengths)).numpy()
        best, scores = (x.numpy() for x in crf.decode(tf.constant(emissions), tf.constant(lengths)))
        for row, n in enumerate(lengths):
            expected = brute_force_log_likelihood(emissions[row, :n], transitions, tags[row, :n])
            assert log_likelihood[row] == pytest.approx(expected, rel=1e-5, abs=1e-5), (case, row)
            assert not best[row, n:].any()   # padding decodes to 0
            if n == 0:
                assert scores[row] == 0.0
                continue
            path, path_score = brute_force_decode(emissions[row, :n], transitions)
            assert list(best[row, :n]) == path, (case, row)
            assert scores[row] == pytest.approx(path_score, rel=1e-5, abs=1e-5), (case, row)


@pytest.mark.parametrize("backend", BACKENDS)
def test_probabilities_of_all_paths_sum_to_one(backend):
    """exp(log-likelihood) over every path of a row is a distribution (the partition function is right)."""
    rng = np.random.default_rng(5)
    num_tags, steps = 3, 4
    emissions = rng.normal(size=(1, steps, num_tags)).astype(np.float32)
    transitions = rng.normal(size=(num_tags, num_tags)).astype(np.float32)
    paths = np.array(list(itertools.product(range(num_tags), repeat=steps)), np.int32)
    crf = make_crf(num_tags, transitions, backend)
    batch = len(paths)
    log_likelihood = crf.log_likelihood(tf.constant(np.repeat(emissions, batch, 0)), tf.constant(paths),
                                        tf.fill([batch], steps)).numpy()
    assert np.exp(log_likelihood.astype(np.float64)).sum() == pytest.approx(1.0, abs=1e-5)


def test_pure_functions_ignore_padding_tags_of_any_value():
    """Tags beyond a row's length may be -1 (padding) in the pure version; results equal those with 0 there."""
    rng = np.random.default_rng(2)
    emissions, transitions, tags, lengths = random_case(rng, 4, 6, 3)
    padded = np.where(np.arange(6)[None] < lengths[:, None], tags, -1).astype(np.int32)
    zeroed = np.where(padded < 0, 0, padded).astype(np.int32)
    np.testing.assert_allclose(crf_log_likelihood(emissions, padded, lengths, transitions).numpy(),
                               crf_log_likelihood(emissions, zeroed, lengths, transitions).numpy(), rtol=0, atol=0)
    for row, n in enumerate(lengths):
        brute = brute_force_log_likelihood(emissions[row, :n], transitions, zeroed[row, :n])
        assert crf_log_likelihood(emissions, padded, lengths, transitions).numpy()[row] == pytest.approx(
            brute, rel=1e-5, abs=1e-5)


# ------------------------------------------------------------------------------------------------------ gradients
def brute_force_transition_gradient(emissions, transitions, tags) -> np.ndarray:
    """d log-likelihood / d transitions = gold transition counts - expected counts under the CRF (enumeration)."""
    steps, num_tags = emissions.shape
    paths = list(itertools.product(range(num_tags), repeat=steps))
    scores = np.array([sequence_score(emissions, transitions, p) for p in paths])
    probabilities = np.exp(scores - scores.max())
    probabilities /= probabilities.sum()
    gradient = np.zeros((num_tags, num_tags))
    for a, b in zip(tags[:-1], tags[1:]):
        gradient[a, b] += 1
    for p, path in zip(probabilities, paths):
        for a, b in zip(path[:-1], path[1:]):
            gradient[a, b] -= p
    return gradient


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_reaches_transitions_and_equals_brute_force(backend):
    rng = np.random.default_rng(9)
    num_tags, steps, lr_multiplier = 3, 5, 10.0
    emissions, transitions, tags, lengths = random_case(rng, 3, steps, num_tags)
    crf = make_crf(num_tags, transitions, backend, lr_multiplier=lr_multiplier)
    inputs = tf.constant(emissions)
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        total = tf.reduce_sum(crf.log_likelihood(inputs, tags, lengths))
    stored_gradient, emission_gradient = tape.gradient(total, [crf.scaled_transitions, inputs])
    stored_gradient = tf.convert_to_tensor(stored_gradient).numpy()
    assert np.isfinite(stored_gradient).all() and np.abs(stored_gradient).max() > 1e-3
    expected = sum(brute_force_transition_gradient(emissions[r, :n], transitions, tags[r, :n])
                   for r, n in enumerate(lengths))
    # the stored weight is transitions / lr_multiplier: its gradient is lr_multiplier times larger
    np.testing.assert_allclose(stored_gradient, lr_multiplier * expected, rtol=1e-4, atol=1e-4)
    padding = np.arange(steps)[None] >= lengths[:, None]
    assert not emission_gradient.numpy()[padding].any()   # padding gets no gradient
    assert np.abs(emission_gradient.numpy()[~padding]).max() > 1e-3


# ------------------------------------------------------------------------------------------------------------ XLA
def test_pure_loss_gradient_and_decode_compile_under_xla():
    """A small Dense -> CRF tagger: loss + gradient and Viterbi under ``jit_compile=True`` equal the plain graph."""
    rng = np.random.default_rng(4)
    num_tags = 5
    emissions, transitions, tags, lengths = random_case(rng, 6, 10, num_tags)
    features = tf.constant(emissions)
    dense = tf.keras.layers.Dense(num_tags)
    dense.build((None, None, num_tags))
    crf = make_crf(num_tags, transitions, "pure")
    variables = [crf.scaled_transitions] + dense.trainable_variables

    def loss_and_gradients(x, y, n):
        with tf.GradientTape() as tape:
            loss = -tf.reduce_mean(crf.log_likelihood(dense(x), y, n))
        return [loss] + tape.gradient(loss, variables)

    def best_paths(x, n):
        return crf.decode(dense(x), n)

    plain = [t.numpy() for t in tf.function(loss_and_gradients)(features, tags, lengths)]
    compiled = [t.numpy() for t in tf.function(loss_and_gradients, jit_compile=True)(features, tags, lengths)]
    for a, b in zip(compiled, plain):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    assert np.abs(compiled[1]).max() > 0   # the transition matrix gets a gradient under XLA too
    xla_tags, xla_scores = tf.function(best_paths, jit_compile=True)(features, lengths)
    graph_tags, graph_scores = tf.function(best_paths)(features, lengths)
    np.testing.assert_array_equal(xla_tags.numpy(), graph_tags.numpy())
    np.testing.assert_allclose(xla_scores.numpy(), graph_scores.numpy(), rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------------------------------- backend choice
def test_backend_choice_from_argument_environment_and_auto(monkeypatch):
    monkeypatch.delenv("BERTKIT_CRF", raising=False)
    assert select_backend() == ("tfa" if tfa_available() else "pure")
    assert select_backend("auto") == select_backend()
    assert select_backend("pure") == "pure"
    monkeypatch.setenv("BERTKIT_CRF", "pure")
    assert select_backend() == "pure" and CRF(3).backend == "pure"
    monkeypatch.setenv("BERTKIT_CRF", "PURE ")
    assert select_backend() == "pure"
    monkeypatch.setenv("BERTKIT_CRF", "")
    assert select_backend() == ("tfa" if tfa_available() else "pure")
    monkeypatch.setenv("BERTKIT_CRF", "torch")
    with pytest.raises(ConfigError, match="BERTKIT_CRF='torch'"):
        select_backend()
    assert select_backend("pure") == "pure"   # the argument wins over the environment
    with pytest.raises(ConfigError, match="backend='viterbi'"):
        CRF(3, backend="viterbi")


def test_forced_tfa_without_tensorflow_addons_is_a_config_error(monkeypatch):
    monkeypatch.setattr(crf_module, "_import_tfa", lambda: (None, "ModuleNotFoundError: no tensorflow_addons"))
    monkeypatch.delenv("BERTKIT_CRF", raising=False)
    assert select_backend() == "pure" and CRF(3).backend == "pure"
    with pytest.raises(ConfigError, match="backend=tfa.*no tensorflow_addons.*BERTKIT_CRF=pure"):
        CRF(3, backend="tfa")
    monkeypatch.setenv("BERTKIT_CRF", "tfa")
    with pytest.raises(ConfigError, match="BERTKIT_CRF=tfa"):
        CRF(3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_config_round_trip_keeps_the_requested_backend(backend):
    crf = CRF(4, lr_multiplier=50.0, backend=backend, name="crf")
    clone = CRF.from_config(crf.get_config())
    assert (clone.num_tags, clone.lr_multiplier, clone.backend) == (4, 50.0, backend)
    assert CRF.from_config(CRF(4).get_config()).get_config()["backend"] is None   # auto stays auto


@needs_tfa
def test_weights_trained_on_one_backend_load_on_the_other():
    rng = np.random.default_rng(1)
    emissions, transitions, tags, lengths = random_case(rng, 3, 5, 4)
    trained = make_crf(4, transitions, "tfa", lr_multiplier=200.0)
    loaded = CRF(4, lr_multiplier=200.0, backend="pure")
    loaded.build(None)
    loaded.set_weights(trained.get_weights())
    np.testing.assert_array_equal(loaded(emissions, lengths).numpy(), trained(emissions, lengths).numpy())


def test_pure_decode_matches_brute_force_for_mixed_precision_inputs():
    """bfloat16 emissions are computed in float32 (the layer's dtype): same path as the float32 emissions."""
    rng = np.random.default_rng(6)
    emissions, transitions, _, lengths = random_case(rng, 3, 4, 3)
    emissions = tf.cast(tf.cast(emissions, tf.bfloat16), tf.float32).numpy()
    crf = make_crf(3, transitions, "pure")
    best = crf(tf.cast(emissions, tf.bfloat16), lengths).numpy()
    np.testing.assert_array_equal(best, crf_decode(emissions, transitions, lengths)[0].numpy())
    for row, n in enumerate(lengths):
        assert list(best[row, :n]) == brute_force_decode(emissions[row, :n], transitions)[0]
