"""PyTorch peer of benches/zoo.rs: training speed of one model of the zoo on real MNIST, on the CPU.

The model comes as mnistlab's spec in JSON, as for bench/keras_zoo.py, and is built the way
mnistlab builds it: Conv2d with ReLU (3x3 or 5x5, no padding or 'same'), MaxPool2d /
AvgPool2d 2x2, BatchNorm2d (or BatchNorm1d after a flatten), Dropout, a global average pool,
Linear with ReLU, a flatten before the first dense layer, and Linear(10) logits at the end;
Adam(1e-3), cross-entropy, pixels scaled to [0, 1], batches shuffled each epoch. For each
--precision (fp32; bf16 is `torch.autocast("cpu", dtype=torch.bfloat16)` around the forward
pass and the loss, PyTorch's mixed precision on the CPU) and each --batch it trains --warmup
steps (not timed), then one timed epoch over the first --images training images, --runs times,
and prints the best rate.

The last lines are machine readable:
    torch_images_per_sec precision=<fp32|bf16> batch=<int> wall=<float> cpu=<float>
"""

import argparse
import contextlib
import json
import os
import sys
import time

import numpy as np

from peer import read_idx  # bench/peer.py, beside this script


def torch_model(torch, spec):
    """The PyTorch model of mnistlab's hidden layers `spec`, with the implied flatten."""
    nn = torch.nn
    out, channels, side, image = [], 1, 28, True
    for layer in spec:
        name, arg = (layer, None) if isinstance(layer, str) else next(iter(layer.items()))
        if name == "Conv":
            k, same = arg["kernel"], arg["same_padding"]
            out += [nn.Conv2d(channels, arg["filters"], k, padding="same" if same else 0), nn.ReLU()]
            channels, side = arg["filters"], side if same else side - k + 1
        elif name in ("MaxPool", "AvgPool"):
            out.append(nn.MaxPool2d(2) if name == "MaxPool" else nn.AvgPool2d(2))
            side //= 2
        elif name == "BatchNorm":
            out.append(nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01) if image else nn.BatchNorm1d(channels, eps=1e-3, momentum=0.01))
        elif name == "Dropout":
            out.append(nn.Dropout(arg))
        elif name == "GlobalAvgPool":
            out += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
            image = False
        elif name == "Dense":
            if image:
                out.append(nn.Flatten())
                channels, image = channels * side * side, False
            out += [nn.Linear(channels, arg), nn.ReLU()]
            channels = arg
        else:
            sys.exit(f"unknown layer {layer!r}")
    if image:
        out.append(nn.Flatten())
        channels = channels * side * side
    out.append(nn.Linear(channels, 10))
    return nn.Sequential(*out)


def epoch(torch, model, opt, x, y, batch, precision, limit=None):
    """One epoch of training over shuffled batches (the first `limit` batches when given)."""
    loss_fn = torch.nn.CrossEntropyLoss()
    order = torch.randperm(len(x))
    steps = 0
    for start in range(0, len(x), batch):
        if limit is not None and steps >= limit:
            break
        idx = order[start : start + batch]
        xb, yb = x[idx], y[idx]
        context = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
        with context:
            loss = loss_fn(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        steps += 1


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mnist_dir", help="folder with train-images-idx3-ubyte and train-labels-idx1-ubyte")
    parser.add_argument("--spec", required=True, help="the model: mnistlab's hidden layers as JSON")
    parser.add_argument("--batch", type=int, action="append", help="batch sizes (default 32 and 128)")
    parser.add_argument("--precision", action="append", help="fp32 and/or bf16 (default fp32)")
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps before the timed epoch")
    parser.add_argument("--runs", type=int, default=1, help="timed epochs per batch size; the best counts")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(int(os.environ.get("MNISTLAB_PEER_THREADS", os.cpu_count() or 1)))
    spec = json.loads(args.spec)
    images = read_idx(os.path.join(args.mnist_dir, "train-images-idx3-ubyte"), 0x803)
    labels = read_idx(os.path.join(args.mnist_dir, "train-labels-idx1-ubyte"), 0x801)
    n = min(len(images), args.images)
    x = torch.from_numpy(images[:n].astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(labels[:n].astype(np.int64))
    results = []
    for precision in args.precision or ["fp32"]:
        for batch in args.batch or [32, 128]:
            torch.manual_seed(0)
            model = torch_model(torch, spec)
            model.train()
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            epoch(torch, model, opt, x, y, batch, precision, limit=args.warmup)
            best_wall, best_cpu = 0.0, 0.0
            for _ in range(args.runs):
                wall0, cpu0 = time.perf_counter(), time.process_time()
                epoch(torch, model, opt, x, y, batch, precision)
                wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
                best_wall, best_cpu = max(best_wall, n / wall), max(best_cpu, n / cpu)
            results.append((precision, batch, best_wall, best_cpu))
    for precision, batch, wall, cpu in results:
        print(f"torch_images_per_sec precision={precision} batch={batch} wall={wall:.1f} cpu={cpu:.1f}")


if __name__ == "__main__":
    main()
