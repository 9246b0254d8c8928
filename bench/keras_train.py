"""Keras peer of benches/train.rs: training speed of the article's CNN on real MNIST.

The model is the article's: Conv2D(32) MaxPool Conv2D(64) MaxPool Conv2D(64) Flatten Dense(64)
Dense(10), 3x3 valid convolutions, ReLU, Glorot-uniform kernels, Adam(1e-3, epsilon 1e-7),
sparse categorical cross-entropy, pixels scaled to [0, 1]. For each --batch it trains --steps
steps (after --warmup steps that are not timed) on the first steps*batch training images, the
way mnistlab's bench does, and prints images per second of wall time and per CPU-second.
The last lines are machine readable:
    keras_images_per_sec batch=<int> wall=<float> cpu=<float>
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from peer import best_epoch_rates, read_idx  # noqa: E402  (bench/peer.py, beside this script)


def build(tf, seed):
    tf.keras.utils.set_random_seed(seed)
    layers = tf.keras.layers
    model = tf.keras.Sequential(
        [
            tf.keras.Input((28, 28, 1)),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=tf.keras.optimizers.Adam(1e-3, epsilon=1e-7),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mnist_dir", help="folder with train-images-idx3-ubyte and train-labels-idx1-ubyte")
    parser.add_argument("--batch", type=int, action="append", help="batch sizes (default 32 and 128)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--runs", type=int, default=2, help="timed runs per batch size; the best counts")
    args = parser.parse_args()

    import tensorflow as tf

    images = read_idx(os.path.join(args.mnist_dir, "train-images-idx3-ubyte"), 0x803)
    labels = read_idx(os.path.join(args.mnist_dir, "train-labels-idx1-ubyte"), 0x801)
    x_all = (images.astype(np.float32) / 255.0)[..., None]
    y_all = labels.astype(np.int64)
    print(f"tensorflow {tf.__version__}, {os.cpu_count()} CPUs", flush=True)
    results = []
    for batch in args.batch or [32, 128]:
        n = min(len(x_all), args.steps * batch)
        x, y = x_all[:n], y_all[:n]
        model = build(tf, 0)
        model.fit(x[: args.warmup * batch], y[: args.warmup * batch], batch_size=batch, epochs=1, verbose=0)
        best_wall, best_cpu = best_epoch_rates(model, x, y, batch, args.runs)
        print(f"keras batch {batch}: {best_wall:.0f} images/s, {best_cpu:.0f} images/CPU-s", flush=True)
        results.append((batch, best_wall, best_cpu))
    for batch, wall, cpu in results:
        print(f"keras_images_per_sec batch={batch} wall={wall:.1f} cpu={cpu:.1f}")


if __name__ == "__main__":
    main()
