"""Keras peer of benches/augment.rs: the same augmentation over the same MNIST images.

Reads an unsigned-byte IDX image file (the MNIST training images), then times one pass of
ImageDataGenerator(rotation_range=10, width_shift_range=0.1, height_shift_range=0.1).flow
over every image. Prints the best of --runs passes; the last line is machine readable:
    keras_images_per_sec=<float>
"""

import argparse
import math
import os
import struct
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402


def read_idx_images(path):
    with open(path, "rb") as f:
        data = f.read()
    magic, count, rows, cols = struct.unpack(">IIII", data[:16])
    if magic != 0x00000803:
        sys.exit(f"{path}: bad magic 0x{magic:08x}, expected 0x00000803 (3-d unsigned-byte IDX)")
    pixels = np.frombuffer(data, dtype=np.uint8, offset=16)
    if pixels.size != count * rows * cols:
        sys.exit(f"{path}: header promises {count}x{rows}x{cols} bytes, file holds {pixels.size}")
    return pixels.reshape(count, rows, cols)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("images", help="train-images-idx3-ubyte")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N images (0: all)")
    args = parser.parse_args()

    from tensorflow.keras.preprocessing.image import ImageDataGenerator

    images = read_idx_images(args.images)
    if args.limit:
        images = images[: args.limit]
    x = images.astype(np.float32)[..., None]
    gen = ImageDataGenerator(rotation_range=10, width_shift_range=0.1, height_shift_range=0.1)
    batches = math.ceil(len(x) / args.batch)
    best = 0.0
    for run in range(args.runs):
        flow = gen.flow(x, batch_size=args.batch, shuffle=False, seed=run)
        start = time.perf_counter()
        seen = 0
        for _ in range(batches):
            seen += len(next(flow))
        elapsed = time.perf_counter() - start
        rate = seen / elapsed
        print(f"keras run {run + 1}: {seen} images in {elapsed:.2f} s, {rate:.0f} images/s", flush=True)
        best = max(best, rate)
    print(f"keras_images_per_sec={best:.1f}")


if __name__ == "__main__":
    main()
