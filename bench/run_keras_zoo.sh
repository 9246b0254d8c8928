#!/usr/bin/env bash
# Runs the Keras peer of the zoo bench (benches/zoo.rs) in the shared Keras virtual environment
# (see bench/keras-venv.sh), e.g.
#   bench/run_keras_zoo.sh ~/.cache/mnistlab/mnist --spec '["MaxPool",{"Dense":128}]' --batch 32
#   bench/run_keras_zoo.sh --sgemm
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/keras-venv.sh"

exec "$venv/bin/python" "$here/keras_zoo.py" "$@"
