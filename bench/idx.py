"""The IDX reader the Keras peers share: MNIST's raw files as numpy arrays."""

import struct
import sys

import numpy as np


def read_idx(path, magic_expected):
    """The uint8 array in the IDX file `path`, whose magic number must be `magic_expected`."""
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    if magic != magic_expected:
        sys.exit(f"{path}: bad magic 0x{magic:08x}, expected 0x{magic_expected:08x}")
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        sys.exit(f"{path}: header promises {dims}, file holds {arr.size} bytes")
    return arr.reshape(dims)
