"""Keras peer of benches/zoo.rs: training speed of one model of the zoo on real MNIST.

The model comes as mnistlab's spec in JSON (the serde form of `model::Layer`, e.g.
`[{"Conv":{"filters":32,"kernel":3,"same_padding":false}},"MaxPool",{"Dense":128}]`) and is
built the way mnistlab builds it: Conv2D with ReLU (3x3 or 5x5, 'valid' or 'same'),
MaxPooling2D / AveragePooling2D 2x2, BatchNormalization, Dropout, GlobalAveragePooling2D,
Dense with ReLU, a Flatten before the first dense layer, and Dense(10) logits at the end;
Glorot-uniform kernels, Adam(1e-3, epsilon 1e-7), sparse categorical cross-entropy, pixels
scaled to [0, 1]. For each --policy (default float32; mixed_bfloat16 is Keras' mixed precision,
with the logits layer kept in float32 as Keras' guide does it) and each --batch it trains
--warmup steps (not timed), then one timed epoch over the first --images training images,
--runs times, and prints the best rate.

With --sgemm it only measures numpy's float32 matrix product (GFLOP/s, 2048x2048, best of 5).

The last lines are machine readable:
    keras_images_per_sec policy=<name> batch=<int> wall=<float> cpu=<float>
    sgemm_gflops=<float>
"""

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from peer import best_epoch_rates, read_idx  # noqa: E402  (bench/peer.py, beside this script)


def keras_layers(tf, spec):
    """The Keras layers of mnistlab's hidden layers `spec`, with the implied flatten."""
    layers = tf.keras.layers
    out, image = [], True
    for layer in spec:
        name, arg = (layer, None) if isinstance(layer, str) else next(iter(layer.items()))
        if name == "Conv":
            padding = "same" if arg["same_padding"] else "valid"
            out.append(layers.Conv2D(arg["filters"], arg["kernel"], padding=padding, activation="relu"))
        elif name == "MaxPool":
            out.append(layers.MaxPooling2D(2))
        elif name == "AvgPool":
            out.append(layers.AveragePooling2D(2))
        elif name == "BatchNorm":
            out.append(layers.BatchNormalization())
        elif name == "Dropout":
            out.append(layers.Dropout(arg))
        elif name == "GlobalAvgPool":
            out.append(layers.GlobalAveragePooling2D())
            image = False
        elif name == "Dense":
            if image:
                out.append(layers.Flatten())
                image = False
            out.append(layers.Dense(arg, activation="relu"))
        else:
            sys.exit(f"unknown layer {layer!r}")
    if image:
        out.append(layers.Flatten())
    out.append(layers.Dense(10, dtype="float32"))
    return out


def build(tf, spec, seed):
    tf.keras.utils.set_random_seed(seed)
    model = tf.keras.Sequential([tf.keras.Input((28, 28, 1)), *keras_layers(tf, spec)])
    model.compile(
        optimizer=tf.keras.optimizers.Adam(1e-3, epsilon=1e-7),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def sgemm_gflops(n=2048, repeats=5):
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mnist_dir", nargs="?", help="folder with train-images-idx3-ubyte and train-labels-idx1-ubyte")
    parser.add_argument("--spec", help="the model: mnistlab's hidden layers as JSON")
    parser.add_argument("--batch", type=int, action="append", help="batch sizes (default 32 and 128)")
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps before the timed epoch")
    parser.add_argument("--runs", type=int, default=1, help="timed epochs per batch size; the best counts")
    parser.add_argument("--policy", action="append", help="Keras dtype policies (default float32)")
    parser.add_argument("--sgemm", action="store_true", help="only measure numpy's sgemm rate")
    args = parser.parse_args()
    if args.sgemm:
        print(f"sgemm_gflops={sgemm_gflops():.1f}")
        return
    if not args.mnist_dir or not args.spec:
        sys.exit("a folder with MNIST and --spec are needed")

    import tensorflow as tf

    spec = json.loads(args.spec)
    images = read_idx(os.path.join(args.mnist_dir, "train-images-idx3-ubyte"), 0x803)
    labels = read_idx(os.path.join(args.mnist_dir, "train-labels-idx1-ubyte"), 0x801)
    n = min(len(images), args.images)
    x = (images[:n].astype(np.float32) / 255.0)[..., None]
    y = labels[:n].astype(np.int64)
    results = []
    for policy in args.policy or ["float32"]:
        tf.keras.mixed_precision.set_global_policy(policy)
        for batch in args.batch or [32, 128]:
            model = build(tf, spec, 0)
            warm = min(n, args.warmup * batch)
            model.fit(x[:warm], y[:warm], batch_size=batch, epochs=1, verbose=0)
            best_wall, best_cpu = best_epoch_rates(model, x, y, batch, args.runs)
            results.append((policy, batch, best_wall, best_cpu))
    for policy, batch, wall, cpu in results:
        print(f"keras_images_per_sec policy={policy} batch={batch} wall={wall:.1f} cpu={cpu:.1f}")


if __name__ == "__main__":
    main()
