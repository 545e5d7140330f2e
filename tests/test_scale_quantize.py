"""skylens.models.quantize on a tiny generated conv net: the int8 copy is smaller, its outputs
track the float32 ones, and bad requests are clear errors."""

import numpy as np
import pytest

import skylens
from skylens.errors import InputError, ModelError
from skylens.models.quantize import quantize_onnx, use_int8

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")


def _tiny_tower(path):
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 32, 3, padding=1),
        torch.nn.ReLU6(),
        torch.nn.Conv2d(32, 64, 3, stride=2, padding=1),
        torch.nn.ReLU6(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 16),
    ).eval()
    torch.onnx.export(
        net,
        (torch.zeros(2, 3, 32, 32),),
        str(path),
        input_names=["pixels"],
        output_names=["out"],
        dynamic_axes={"pixels": {0: "n"}, "out": {0: "n"}},
        opset_version=17,
        dynamo=False,
    )
    return path


def _run(path, x):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        None, {"pixels": x}
    )[0]


@pytest.mark.parametrize("method", ["static", "dynamic"])
def test_int8_copy_tracks_float32(tmp_path, method):
    src = _tiny_tower(tmp_path / "tower.onnx")
    rng = np.random.default_rng(0)
    calib = [rng.uniform(-1, 1, (4, 3, 32, 32)).astype(np.float32) for _ in range(4)]
    dst = quantize_onnx(src, tmp_path / f"tower-{method}.onnx", method=method, calibration=calib)
    assert dst.stat().st_size < src.stat().st_size
    x = rng.uniform(-1, 1, (8, 3, 32, 32)).astype(np.float32)
    ref, got = _run(src, x), _run(dst, x)
    cos = np.sum(ref * got, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1))
    assert cos.min() > 0.98
    assert not list(tmp_path.glob("*.tmp.onnx")) and not list(tmp_path.glob("*.pre.onnx"))


def test_bad_requests_are_clear(tmp_path):
    src = _tiny_tower(tmp_path / "tower.onnx")
    with pytest.raises(InputError, match="method"):
        quantize_onnx(src, tmp_path / "x.onnx", method="fp8")
    with pytest.raises(InputError, match="calibration"):
        quantize_onnx(src, tmp_path / "x.onnx", method="static", calibration=[])
    with pytest.raises(ModelError, match="no ONNX image tower"):
        use_int8(skylens.load("fake"), method="dynamic")
