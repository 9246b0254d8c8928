#!/usr/bin/env bash
# Runs the Keras peer of the training bench (benches/train.rs).
#
# Creates its own virtual environment (default ~/.cache/mnistlab/keras-venv, shared with
# bench/run_keras_augment.sh; override with MNISTLAB_KERAS_VENV), installs tensorflow-cpu and
# numpy, then runs bench/keras_train.py with the arguments given, e.g.
#   bench/run_keras_train.sh ~/.cache/mnistlab/mnist --batch 32 --steps 300
# The last lines of output are machine readable:
#   keras_images_per_sec batch=<int> wall=<float> cpu=<float>
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${MNISTLAB_KERAS_VENV:-${HOME}/.cache/mnistlab/keras-venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import tensorflow, numpy' >/dev/null 2>&1; then
    echo "keras peer: setting up $venv (tensorflow-cpu, numpy); this takes a few minutes" >&2
    if ! "$python" -m pip index versions tensorflow-cpu >/dev/null 2>&1; then
        echo "keras peer: tensorflow-cpu is not available for $("$python" --version 2>&1) from the package index" >&2
        exit 3
    fi
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
    "$venv/bin/python" -m pip install --quiet tensorflow-cpu numpy >&2
fi

exec "$venv/bin/python" "$here/keras_train.py" "$@"
