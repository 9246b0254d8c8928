#!/usr/bin/env bash
# Runs the PyTorch peer of the zoo bench (benches/zoo.rs) in the shared peers' virtual
# environment (bench/keras-venv.sh), installing PyPI's `torch` there first if it is missing
# (its wheel needs NVIDIA's CUDA wheels beside it, several GB, even to run on the CPU), e.g.
#   bench/run_torch_zoo.sh ~/.cache/mnistlab/mnist --spec '["MaxPool",{"Dense":128}]' --batch 32 --precision bf16
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/keras-venv.sh"

if ! "$venv/bin/python" -c 'import torch' >/dev/null 2>&1; then
    echo "torch peer: installing torch into $venv; this takes several minutes" >&2
    "$venv/bin/python" -m pip install --quiet torch >&2
fi
exec "$venv/bin/python" "$here/torch_zoo.py" "$@"
