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

source "$(dirname "${BASH_SOURCE[0]}")/keras-venv.sh"

exec "$venv/bin/python" "$here/keras_train.py" "$@"
