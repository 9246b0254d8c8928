#!/usr/bin/env bash
# Runs the Keras peer of the augmentation bench (benches/augment.rs).
#
# Creates its own virtual environment (default ~/.cache/mnistlab/keras-venv, override with
# MNISTLAB_KERAS_VENV), installs tensorflow-cpu, numpy and scipy (ImageDataGenerator's affine
# transforms need scipy), then runs bench/keras_augment.py with the arguments given, e.g.
#   bench/run_keras_augment.sh /tmp/mnist-cache/mnist/train-images-idx3-ubyte
# The last line of output is machine readable: `keras_images_per_sec=<float>`.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/keras-venv.sh"

exec "$venv/bin/python" "$here/keras_augment.py" "$@"
