"""What the Keras peers share: MNIST's raw IDX files as numpy arrays, and the timed epochs."""

import struct
import sys
import time

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


def best_epoch_rates(model, x, y, batch, runs):
    """The best images/s of wall time and of CPU time over `runs` timed epochs of `model.fit`."""
    n = len(x)
    best_wall, best_cpu = 0.0, 0.0
    for _ in range(runs):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=True)
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
        best_wall, best_cpu = max(best_wall, n / wall), max(best_cpu, n / cpu)
    return best_wall, best_cpu
