"""`export onnx` against ONNX's own tools: onnx.checker and onnxruntime.

One mnistlab script trains every preset and two models that hold every other layer kind
(`same` and valid convolutions, 5×5 kernels, batch norm on images and on vectors, max and
average pooling, global average pooling, dropout) for one epoch on 100 images per class, a
LoRA-adapted one on top, and saves and exports each. For each, onnxruntime's logits on all
10,000 official MNIST test images must give mnistlab's predicted class everywhere and lie
within 1e-4 of the logits mnistlab computes (`examples/onnx_logits.rs`); the input is scaled
from the model's own metadata. Then the README's deployment example is run as written, and the
statement is driven through the Jupyter kernel.
"""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]

# name -> the `model` statement; the scaling statement that runs before each group.
GROUPS = [
    ("normalize", [("seed-small", "model seed-small"), ("seed-cnn", "model seed-cnn")]),
    (
        "normalize -1..1",
        [
            ("lenet5", "model lenet5"),
            (
                "options",
                "model conv8k5 same stride 2 nobias norelu bn relu conv8k4 nobias tanh conv8k1 norelu silu conv16k7 same stride 3 dense16 nobias norelu bn tanh output nobias bn",  # noqa: E501
            ),
        ],
    ),
    (
        "standardize",
        [
            ("strong", "model strong"),
            ("every", "model conv8 same bn conv8k5 pool conv16 same avgpool bn dropout 0.25 dense32 bn dropout 0.2"),
            ("gap", "model conv8k5 same bn pool conv16 bn gap dense16"),
        ],
    ),
]
MODELS = [name for _, models in GROUPS for name, _ in models] + ["lora"]


def mnistlab(*args, cwd=ROOT):
    """Runs the mnistlab binary of this checkout; returns its stdout."""
    done = subprocess.run(
        ["cargo", "run", "--quiet", "--manifest-path", str(ROOT / "Cargo.toml"), "--", *args],
        cwd=cwd, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Trains, saves and exports every model; returns (folder, the script's output)."""
    out = tmp_path_factory.mktemp("onnx")
    lines = ["load mnist", "subset 100 per class seed 1", "seed 3"]
    for scaling, models in GROUPS:
        lines.append(scaling)
        for name, statement in models:
            lines += [statement, "fit 1", f"save model {out}/{name}.safetensors", f"export onnx {out}/{name}.onnx"]
    # LoRA on the last dense-layered model: adapters trained for an epoch, saved unmerged.
    lines += [
        "model conv8 same bn conv8k5 pool conv16 same avgpool bn dropout 0.25 dense32 bn dropout 0.2",
        "fit 1",
        "adapt lora rank 4 alpha 8",
        "fit 1",
        f"save model {out}/lora.safetensors",
        f"export onnx {out}/lora.onnx",
    ]
    script = out / "export.lab"
    script.write_text("\n".join(lines) + "\n")
    return out, mnistlab("run", str(script))


def mnistlab_logits(model, out):
    """mnistlab's own logits on the official test set, with the test images and labels."""
    done = subprocess.run(
        ["cargo", "run", "--quiet", "--example", "onnx_logits", "--", str(model), str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    n, classes = map(int, done.stdout.split())
    images = np.fromfile(out / "images.u8", dtype=np.uint8).reshape(n, 28, 28)
    labels = np.fromfile(out / "labels.u8", dtype=np.uint8)
    logits = np.fromfile(out / "logits.f32", dtype="<f4").reshape(n, classes)
    return images, labels, logits


def metadata(model):
    return {p.key: p.value for p in model.metadata_props}


def test_the_script_says_what_it_exported(exported):
    _, printed = exported
    said = [l for l in printed.splitlines() if l.startswith("exported ONNX model")]
    assert len(said) == len(MODELS), printed
    assert all("input `image` float32 N×1×28×28" in l and "outputs `logits` and `probabilities`" in l for l in said)


@pytest.mark.parametrize("name", MODELS)
def test_exported_model_matches_mnistlab(exported, name, tmp_path):
    folder, _ = exported
    path = folder / f"{name}.onnx"
    model = onnx.load(str(path))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 13
    graph = model.graph
    assert [i.name for i in graph.input] == ["image"]
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["N", 1, 28, 28]
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [o.name for o in graph.output] == ["logits", "probabilities"]
    ops = [n.op_type for n in graph.node]
    assert "Dropout" not in ops
    names = {t.name for t in graph.initializer}
    assert not any("lora" in t for t in names), names
    # Batch norm carries statistics that training moved off their initial zeros and ones.
    for t in graph.initializer:
        if t.name.endswith("running_mean"):
            assert np.abs(onnx.numpy_helper.to_array(t)).max() > 1e-3, t.name
        if t.name.endswith("running_var"):
            assert np.abs(onnx.numpy_helper.to_array(t) - 1).max() > 1e-3, t.name

    meta = metadata(model)
    assert json.loads(meta["classes"]) == [str(d) for d in range(10)]
    scale, offset = np.float32(meta["pixel_scale"]), np.float32(meta["pixel_offset"])
    kind = json.loads(meta["pixel_scaling"])["kind"]
    want_kind = {"seed-small": "unit", "seed-cnn": "unit", "lenet5": "symmetric", "options": "symmetric"}.get(name, "standard")
    assert kind == want_kind

    images, labels, want = mnistlab_logits(folder / f"{name}.safetensors", tmp_path)
    assert len(images) == 10_000
    x = (images.astype(np.float32) * scale + offset)[:, None, :, :]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, probs = session.run(["logits", "probabilities"], {"image": x})
    assert logits.shape == want.shape == (10_000, 10)
    diff = float(np.abs(logits - want).max())
    same = int((logits.argmax(1) == want.argmax(1)).sum())
    accuracy = float((logits.argmax(1) == labels).mean())
    print(f"{name}: max |logit difference| {diff:.3g}, same class on {same}/10000, test accuracy {accuracy:.4f}")
    assert same == 10_000
    assert diff <= 1e-4
    exp = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs, exp / exp.sum(1, keepdims=True), atol=1e-6)
    # Trained, not random: above twice the 10% of chance (the global-pooling net learns slowest).
    assert accuracy > 0.2


def test_every_layer_kind_is_in_the_exports(exported):
    folder, _ = exported
    ops = set()
    for name in MODELS:
        ops |= {n.op_type for n in onnx.load(str(folder / f"{name}.onnx")).graph.node}
    assert {"Conv", "Relu", "MaxPool", "AveragePool", "BatchNormalization", "GlobalAveragePool", "Flatten",
            "Gemm", "Softmax"} <= ops
    conv_pads = set()
    kernels = set()
    for name in MODELS:
        for node in onnx.load(str(folder / f"{name}.onnx")).graph.node:
            if node.op_type == "Conv":
                attrs = {a.name: list(a.ints) for a in node.attribute}
                conv_pads.add(tuple(attrs["pads"]))
                kernels.add(tuple(attrs["kernel_shape"]))
    assert {(0, 0, 0, 0), (1, 1, 1, 1), (2, 2, 2, 2)} <= conv_pads
    assert {(3, 3), (5, 5)} <= kernels


def test_an_ensemble_exports_as_one_graph_averaging_its_members(tmp_path):
    out = tmp_path / "out"
    script = tmp_path / "ensemble.lab"
    script.write_text("\n".join([
        "load mnist", "subset 50 per class seed 2", "normalize", "seed 11", "model conv8 pool dense16",
        "ensemble fit 2 1", f"ensemble save {out}/ens", f"export onnx {out}/ens.onnx", "ensemble off",
        f"load model {out}/ens/member-1.safetensors", f"export onnx {out}/m1.onnx",
        f"load model {out}/ens/member-2.safetensors", f"export onnx {out}/m2.onnx",
    ]) + "\n")
    printed = mnistlab("run", str(script))
    said = re.search(r"ensemble of 2, test: loss \S+ - accuracy (\S+)", printed)
    assert said, printed
    model = onnx.load(str(out / "ens.onnx"))
    onnx.checker.check_model(model, full_check=True)
    meta = metadata(model)
    assert len(json.loads(meta["members"])) == 2
    assert {t.name.split(".")[0] for t in model.graph.initializer} == {"m1", "m2"}
    images, labels, _ = mnistlab_logits(out / "ens" / "member-1.safetensors", tmp_path / "logits")
    scale, offset = np.float32(meta["pixel_scale"]), np.float32(meta["pixel_offset"])
    x = (images.astype(np.float32) * scale + offset)[:, None, :, :]

    def run(name):
        session = ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"])
        return session.run(["logits", "probabilities"], {"image": x})

    logits, probs = run("ens.onnx")
    mean = (run("m1.onnx")[1] + run("m2.onnx")[1]) / 2
    np.testing.assert_allclose(probs, mean, atol=1e-6)
    np.testing.assert_allclose(np.exp(logits), probs, atol=1e-6)
    accuracy = float((probs.argmax(1) == labels).mean())
    print(f"ensemble of 2: onnxruntime test accuracy {accuracy:.4f}, mnistlab said {said.group(1)}")
    assert abs(accuracy - float(said.group(1))) <= 2e-4


def readme_example():
    text = (ROOT / "README.md").read_text()
    section = text.split("## Deploying with ONNX", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_readme_example_classifies_a_png(exported, tmp_path):
    folder, _ = exported
    code = readme_example()
    assert len(code.strip().splitlines()) == 5, code
    images, labels, want = mnistlab_logits(folder / "seed-cnn.safetensors", tmp_path / "logits")
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(folder / "seed-cnn.onnx", work / "mnist.onnx")
    for i in range(3):
        Image.fromarray(images[i]).save(work / "digit.png")
        printed = subprocess.run(
            [str(Path(__import__("sys").executable)), "-c", code], cwd=work, capture_output=True, text=True,
            timeout=120,
        )
        assert printed.returncode == 0, printed.stderr
        assert printed.stdout.split()[0] == str(int(want[i].argmax())), printed.stdout


def test_export_through_the_kernel(tmp_path):
    from jupyter_client import KernelManager

    km = KernelManager(kernel_name="mnistlab")
    km.start_kernel(cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        reply = kc.execute_interactive("export onnx early.onnx", timeout=60)
        assert reply["content"]["status"] == "error"
        assert reply["content"]["ename"] == "UsageError"
        assert "export onnx needs a model" in reply["content"]["evalue"]
        assert not (tmp_path / "early.onnx").exists()
        texts = []
        reply = kc.execute_interactive(
            "model seed-small\nexport onnx out/k.onnx", timeout=120,
            output_hook=lambda m: texts.append(m["content"].get("text", "")),
        )
        assert reply["content"]["status"] == "ok", reply["content"]
        assert any("exported ONNX model" in t for t in texts), texts
        model = onnx.load(str(tmp_path / "out" / "k.onnx"))
        onnx.checker.check_model(model, full_check=True)
        assert json.loads(metadata(model)["classes"]) == [str(d) for d in range(10)]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
