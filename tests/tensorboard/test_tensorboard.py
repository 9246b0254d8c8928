"""`log tensorboard DIR` read back by TensorBoard itself (PyPI `tensorboard`): its
EventAccumulator finds every scalar at every epoch with the values `fit` printed and saved,
the histograms of every parameter (against the checkpoint of the same epoch) and of its
gradient, the images and the texts; `tensorboard --logdir` serves the same scalars over HTTP.

The run trains on real MNIST (a 500-image subset of the train split, the official test set)."""

import json
import os
import re
import socket
import struct
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

ROOT = Path(__file__).resolve().parents[2]
BINARY = Path(os.environ.get("MNISTLAB_BIN", ROOT / "target" / "debug" / "mnistlab"))
EPOCHS = 3

SCRIPT = f"""load mnist
normalize
split val 10 seed 2
subset 50 per class seed 2
augment rotate 10
model conv8 bn pool dropout 0.25 dense16
log tensorboard tb
fit {EPOCHS} checkpoint ck
save history history.json
"""

EPOCH_LINE = re.compile(
    r"Epoch (\d+)/\d+ - .* - loss: ([\d.]+) - accuracy: ([\d.]+) - val_loss: ([\d.]+) - "
    r"val_accuracy: ([\d.]+) - (\d+) images/s"
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Runs the script; its folder, stdout, the run's name and folder, and the history."""
    work = tmp_path_factory.mktemp("tb")
    (work / "train.lab").write_text(SCRIPT)
    done = subprocess.run([str(BINARY), "run", "train.lab"], cwd=work, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(r"TensorBoard run (\S+): (\S+)", done.stdout)
    assert found, done.stdout
    name, events = found.group(1), work / found.group(2)
    assert events.parent == work / "tb" / name and events.name.startswith("events.out.tfevents.")
    history = json.loads((work / "history.json").read_text())
    accumulator = EventAccumulator(str(events.parent), size_guidance={"scalars": 0, "histograms": 0, "images": 0, "tensors": 0})
    accumulator.Reload()
    return {"dir": work, "stdout": done.stdout, "name": name, "history": history, "acc": accumulator}


def printed_epochs(stdout):
    """The epoch lines' numbers: {epoch: (loss, accuracy, val_loss, val_accuracy, images/s)}."""
    rows = {}
    for m in EPOCH_LINE.finditer(stdout):
        rows[int(m.group(1))] = tuple(m.group(i) for i in range(2, 7))
    return rows


def scalars(acc, tag):
    return {e.step: e.value for e in acc.Scalars(tag)}


def test_every_scalar_at_every_epoch_is_what_fit_printed_and_saved(run):
    acc, printed = run["acc"], printed_epochs(run["stdout"])
    assert sorted(printed) == list(range(1, EPOCHS + 1)), run["stdout"]
    tags = set(acc.Tags()["scalars"])
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "images_per_sec", "batch/loss"} <= tags
    for i, name in enumerate(["loss", "accuracy", "val_loss", "val_accuracy"]):
        logged = scalars(acc, name)
        assert sorted(logged) == list(range(1, EPOCHS + 1)), name
        for epoch, shown in printed.items():
            # The line shows 4 places; the event holds the float32 the history holds in full.
            assert f"{logged[epoch]:.4f}" == shown[i], (name, epoch)
            assert logged[epoch] == np.float32(run["history"]["epochs"][epoch - 1][name]), (name, epoch)
    for name, key in [("learning_rate", "lr"), ("images_per_sec", "images_per_sec")]:
        logged = scalars(acc, name)
        for epoch in printed:
            assert logged[epoch] == np.float32(run["history"]["epochs"][epoch - 1][key]), (name, epoch)
    for epoch, shown in printed.items():
        assert f"{scalars(acc, 'images_per_sec')[epoch]:.0f}" == shown[4]


def test_the_batch_loss_runs_through_every_epoch_and_ends_each_at_its_mean(run):
    acc = run["acc"]
    batch = scalars(acc, "batch/loss")
    steps = sorted(batch)
    per_epoch = steps[-1] // EPOCHS
    assert len(steps) >= EPOCHS * 10 and steps[-1] == EPOCHS * per_epoch
    loss = scalars(acc, "loss")
    for epoch in range(1, EPOCHS + 1):
        assert batch[epoch * per_epoch] == loss[epoch]


def safetensors(path):
    """The tensors of a safetensors file (its JSON header, then little-endian data)."""
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + length])
    data = raw[8 + length :]
    types = {"F32": "<f4", "U32": "<u4"}
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(data[start:end], dtype=types[info["dtype"]])
    return out


def test_histograms_of_every_parameter_match_the_checkpoint_and_gradients_are_there(run):
    acc = run["acc"]
    tags = set(acc.Tags()["histograms"])
    weights = {k: v for k, v in safetensors(run["dir"] / "ck" / "last.safetensors").items() if not k.startswith("train.")}
    assert {f"weights/{name}" for name in weights} == {t for t in tags if t.startswith("weights/")}
    trainable = {name for name in weights if not name.endswith(("running_mean", "running_var"))}
    assert {f"gradients/{name}" for name in trainable} == {t for t in tags if t.startswith("gradients/")}
    for name, values in weights.items():
        events = acc.Histograms(f"weights/{name}")
        assert [e.step for e in events] == list(range(1, EPOCHS + 1)), name
        # The last checkpoint holds the last epoch's weights.
        h = events[-1].histogram_value
        assert (h.num, h.min, h.max) == (values.size, float(values.min()), float(values.max())), name
        assert h.sum == pytest.approx(float(values.astype(np.float64).sum()), rel=1e-9, abs=1e-9), name
        assert sum(h.bucket) == values.size, name
    for name in trainable:
        events = acc.Histograms(f"gradients/{name}")
        assert [e.step for e in events] == list(range(1, EPOCHS + 1)), name
        assert events[-1].histogram_value.num == weights[name].size, name
        assert events[-1].histogram_value.sum_squares > 0, name


def test_images_and_texts_are_there(run):
    acc = run["acc"]
    images = set(acc.Tags()["images"])
    assert {"train/samples", "test/confusion", "test/mistakes"} <= images
    assert [e.step for e in acc.Images("train/samples")] == [0]
    assert [e.step for e in acc.Images("test/confusion")] == [EPOCHS]
    for tag in ["train/samples", "test/confusion", "test/mistakes"]:
        image = acc.Images(tag)[0]
        assert image.encoded_image_string.startswith(b"\x89PNG\r\n\x1a\n"), tag
        width, height = struct.unpack(">II", image.encoded_image_string[16:24])
        assert (image.width, image.height) == (width, height), tag
    texts = set(acc.Tags()["tensors"])
    assert {"model", "statements"} <= texts
    model = acc.Tensors("model")[0].tensor_proto.string_val[0].decode()
    assert "conv8 batchnorm maxpool dropout0.25 dense16" in model and "| layer |" in model
    statements = acc.Tensors("statements")[0].tensor_proto.string_val[0].decode()
    for line in ["load mnist", "subset 50 per class seed 2", "log tensorboard tb", f"fit {EPOCHS} checkpoint ck"]:
        assert line in statements, statements
    assert acc.SummaryMetadata("model").plugin_data.plugin_name == "text"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tensorboard_serves_the_scalars_over_http(run):
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tensorboard.main", "--logdir", str(run["dir"] / "tb"), "--host", "127.0.0.1",
         "--port", str(port), "--reload_interval", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        query = urllib.parse.urlencode({"run": run["name"], "tag": "val_accuracy"})
        url = f"http://127.0.0.1:{port}/data/plugin/scalars/scalars?{query}"
        deadline, rows = time.time() + 120, None
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=5) as reply:
                    rows = json.loads(reply.read())
                if len(rows) == EPOCHS:
                    break
            except OSError:
                pass
            time.sleep(1)
        assert rows is not None and len(rows) == EPOCHS, rows
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=5) as reply:
            assert run["name"] in json.loads(reply.read())
        printed = printed_epochs(run["stdout"])
        for wall_time, step, value in rows:
            assert f"{value:.4f}" == printed[step][3], (step, value)
            assert wall_time > 0
    finally:
        server.terminate()
        server.wait(timeout=30)
