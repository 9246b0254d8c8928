#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/seeds/ that are made from the real MNIST pickle
(target/test-data/mnist.pkl.gz, see scripts/test) and by hand: idx, pickle, image, wire, parser.
The npz, csv, manifest and checkpoint seeds come from the lab's own `save` (see README, Fuzzing).
Needs numpy and pillow."""
import gzip, hashlib, hmac, io, json, os, pickle, shutil, struct, sys
import numpy as np
from PIL import Image

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
seeds = os.path.join(root, "fuzz", "seeds")

def put(target, name, data):
    d = os.path.join(seeds, target)
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, name), "wb").write(data)

raw = open(os.path.join(root, "target/test-data/mnist.pkl.gz"), "rb").read()
plain = gzip.decompress(raw)
(tx, ty), (vx, vy), (sx, sy) = pickle.loads(plain, encoding="latin1")

# pickle: prefixes of the real file (gzip and plain), small valid pickles of real images.
put("pickle", "real-prefix-4k.pkl.gz", raw[:4096])
put("pickle", "real-plain-prefix-8k.pkl", plain[:8192])
small = ((tx[:3], ty[:3]), (vx[:2], vy[:2]), (sx[:2], sy[:2]))
put("pickle", "small-protocol4.pkl", pickle.dumps(small, protocol=4))
put("pickle", "small-protocol4.pkl.gz", gzip.compress(pickle.dumps(small, protocol=4)))
put("pickle", "small-protocol2.pkl", pickle.dumps(small, protocol=2))

# idx: real MNIST bytes in the official layout: prefixes and small whole files, plain and gzip.
images = np.rint(np.concatenate([tx, vx]) * 255).astype(np.uint8)
labels = np.concatenate([ty, vy]).astype(np.uint8)
def idx(arr):
    return bytes([0, 0, 8, arr.ndim]) + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.tobytes()
full_images = idx(images.reshape(-1, 28, 28))
full_labels = idx(labels)
put("idx", "train-images-prefix-4k", full_images[:4096])
put("idx", "train-labels-prefix-1k", full_labels[:1024])
put("idx", "train-images-prefix-4k.gz", gzip.compress(full_images[:200000])[:4096])
put("idx", "images-3.idx3", idx(images[:3].reshape(-1, 28, 28)))
put("idx", "images-3.idx3.gz", gzip.compress(idx(images[:3].reshape(-1, 28, 28))))
put("idx", "labels-10.idx1", idx(labels[:10]))
put("idx", "labels-10.idx1.gz", gzip.compress(idx(labels[:10])))

# image: a real digit as PNG (gray, RGBA on white paper, 16-bit) and JPEG.
digit = 255 - images[0].reshape(28, 28)  # dark ink on light paper, as a photo would be
def png(img, **kw):
    b = io.BytesIO(); img.save(b, format="PNG", **kw); return b.getvalue()
def jpeg(img, **kw):
    b = io.BytesIO(); img.save(b, format="JPEG", **kw); return b.getvalue()
put("image", "digit-gray.png", png(Image.fromarray(digit)))
put("image", "digit-rgba.png", png(Image.fromarray(digit).convert("RGBA")))
put("image", "digit-16bit.png", png(Image.fromarray(digit.astype(np.uint16) * 257)))
put("image", "digit-palette.png", png(Image.fromarray(digit).convert("P")))
put("image", "digit-gray.jpg", jpeg(Image.fromarray(digit), quality=80))
put("image", "digit-rgb.jpg", jpeg(Image.fromarray(digit).convert("RGB"), quality=60))
put("image", "digit-progressive.jpg", jpeg(Image.fromarray(digit).convert("RGB"), progressive=True))

# wire: the kernel's messages as frames joined by 0xff, after a mode byte (see fuzz/harness.rs).
KEY = b"fuzz-key"
def frames(msg_type, content, key=KEY, ident=b"client-1", buffers=()):
    header = {"msg_id": "5a1f", "session": "s1", "username": "u", "date": "2026-01-01T00:00:00Z",
              "msg_type": msg_type, "version": "5.3"}
    parts = [json.dumps(p).encode() for p in (header, {}, {}, content)]
    sig = hmac.new(key, b"".join(parts), hashlib.sha256).hexdigest().encode() if key else b""
    return [ident, b"<IDS|MSG>", sig] + parts + list(buffers)
def wire(name, mode, fs):
    put("wire", name, bytes([mode]) + b"\xff".join(fs))
wire("kernel_info", 0, frames("kernel_info_request", {}))
wire("execute", 0, frames("execute_request", {"code": "load mnist\nsubset 2 per class\nshow 4", "silent": False,
     "store_history": True, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True}))
wire("complete", 0, frames("complete_request", {"code": "lo", "cursor_pos": 2}))
wire("inspect", 0, frames("inspect_request", {"code": "train", "cursor_pos": 3, "detail_level": 0}))
wire("is_complete", 0, frames("is_complete_request", {"code": "load mnist"}))
wire("shutdown", 0, frames("shutdown_request", {"restart": False}))
wire("comm_info", 1, frames("comm_info_request", {}))
wire("buffers", 0, frames("execute_request", {"code": "summary"}, buffers=[b"\x00\x01", b"buf"]))
wire("no-key", 2, frames("history_request", {"output": False, "raw": True, "hist_access_type": "tail", "n": 3}, key=None))
wire("no-ident", 0, frames("kernel_info_request", {})[1:])
wire("bad-signature", 0, frames("kernel_info_request", {}, key=b"other"))

# parser: the example scripts.
for name in sorted(os.listdir(os.path.join(root, "examples"))):
    if name.endswith(".lab"):
        shutil.copy(os.path.join(root, "examples", name), os.path.join(seeds, "parser", name)) \
            if os.path.isdir(os.path.join(seeds, "parser")) else put("parser", name, open(os.path.join(root, "examples", name), "rb").read())
