#!/usr/bin/env bash
# Sourced by the Keras peer scripts: makes sure the shared virtual environment exists
# (default ~/.cache/mnistlab/keras-venv, override with MNISTLAB_KERAS_VENV) with
# tensorflow-cpu, numpy and scipy (ImageDataGenerator's affine transforms need scipy), and sets
# `venv` and `here`. Exits 3 when tensorflow-cpu is not available for this Python.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${MNISTLAB_KERAS_VENV:-${HOME}/.cache/mnistlab/keras-venv}"
python="${PYTHON:-python3}"

if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import tensorflow, scipy, numpy' >/dev/null 2>&1; then
    echo "keras peer: setting up $venv (tensorflow-cpu, numpy, scipy); this takes a few minutes" >&2
    if ! "$python" -m pip index versions tensorflow-cpu >/dev/null 2>&1; then
        echo "keras peer: tensorflow-cpu is not available for $("$python" --version 2>&1) from the package index" >&2
        exit 3
    fi
    "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip >&2
    "$venv/bin/python" -m pip install --quiet tensorflow-cpu numpy scipy >&2
fi
