"""An int8 image tower: post-training quantisation of the tower's ONNX file with onnxruntime.

Static quantisation (Jacob et al., "Quantization and training of neural networks for efficient
integer-arithmetic-only inference", CVPR 2018), in onnxruntime's QDQ form: weights int8 per
output channel, activations uint8 with ranges calibrated on real chips, so convolutions run as
integer kernels (VNNI on x86) instead of float32 ones. Dynamic quantisation (weights only,
activation ranges per call) is offered too; on a convolutional tower it quantises little and
mostly adds conversions.

Generic over the tower: ``quantize_onnx`` takes any ONNX file with one image input (the model
helper may change the default tower); ``use_int8`` swaps the session of a loaded model whose
``image_tower`` has ``onnx_path`` and ``session`` (the default model's ``towers.ImageTower``) and
gives the model a new version (``...+int8``): its vectors differ slightly from float32 ones, so
an index refuses to mix them. It is an option, not the default: ``bench/bench_quantize.py``
measures its speed and its retrieval/zero-shot cost (``bench/results/scale_quantize.json``).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from skylens.errors import InputError, ModelError

METHODS = ("static", "dynamic")
CALIBRATION_BATCH = 16


def quantize_onnx(
    src: str | Path,
    dst: str | Path,
    *,
    method: str = "static",
    calibration: Iterable[np.ndarray] | None = None,
) -> Path:
    """Write an int8 copy of the ONNX model ``src`` to ``dst``.

    Args:
        src: float32 ONNX model with one input (a preprocessed NCHW batch).
        dst: where to write the quantised model (written atomically).
        method: ``"static"`` (activation ranges from ``calibration``) or ``"dynamic"``.
        calibration: preprocessed input batches (float32 NCHW) of real images; ``static`` only.

    Raises:
        InputError: an unknown method, or static without calibration batches.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in METHODS:
        raise InputError(f"quantisation method must be one of {', '.join(METHODS)}, got {method!r}")
    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(dst.name + ".tmp.onnx")
    prepared = dst.with_name(dst.name + ".pre.onnx")
    quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
    try:
        if method == "dynamic":
            quantize_dynamic(str(prepared), str(tmp), weight_type=QuantType.QInt8, per_channel=True)
        else:
            batches = [np.ascontiguousarray(b, np.float32) for b in (calibration or [])]
            if not batches:
                raise InputError("static quantisation needs calibration batches of real images")
            name = _input_name(prepared)

            class _Reader(CalibrationDataReader):
                def __init__(self) -> None:
                    self.it = iter(batches)

                def get_next(self):
                    b = next(self.it, None)
                    return None if b is None else {name: b}

            quantize_static(
                str(prepared),
                str(tmp),
                _Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )
        tmp.replace(dst)
    finally:
        prepared.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return dst


def _input_name(path: Path) -> str:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    inputs = [i.name for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ModelError(f"{path}: expected one image input, found {inputs}")
    return inputs[0]


def use_int8(
    model,
    calibration_images: Sequence[np.ndarray] | None = None,
    *,
    method: str = "static",
    threads: int | None = None,
):
    """Run ``model``'s image tower in int8 from now on; returns ``model`` (with a new version).

    The quantised file is cached beside the float32 one, keyed by the tower file's digest, the
    method and the calibration images, so later loads skip the quantisation.

    Args:
        model: a loaded model whose ``image_tower`` has ``onnx_path`` and ``session`` and that
            has ``preprocess`` (the default model).
        calibration_images: RGB uint8 chips (a few hundred real ones of the kind to be indexed;
            never an evaluation split); ``static`` only.
        method: ``"static"`` or ``"dynamic"``.
        threads: onnxruntime threads (default ``SKYLENS_THREADS`` or every core).

    Raises:
        CapabilityError/ModelError: the model has no ONNX image tower.
    """
    from skylens.models.towers import default_threads, ort_session

    tower = getattr(model, "image_tower", None)
    if tower is None or not hasattr(tower, "onnx_path") or not hasattr(model, "preprocess"):
        raise ModelError(
            f"model '{getattr(model, 'name', model)}' has no ONNX image tower to quantise"
        )
    src = Path(tower.onnx_path)
    key = hashlib.sha256(src.read_bytes()).hexdigest()[:12] + f"-{method}"
    batches = None
    if method == "static":
        imgs = list(calibration_images or [])
        if not imgs:
            raise InputError("static quantisation needs calibration images (RGB uint8 chips)")
        key += (
            "-"
            + hashlib.sha256(b"".join(np.ascontiguousarray(i).tobytes() for i in imgs)).hexdigest()[
                :8
            ]
        )
        batches = (
            model.preprocess(imgs[i : i + CALIBRATION_BATCH])
            for i in range(0, len(imgs), CALIBRATION_BATCH)
        )
    dst = src.with_name(f"{src.stem}-int8-{key}.onnx")
    if not dst.is_file():
        quantize_onnx(src, dst, method=method, calibration=batches)
    tower.session = ort_session(dst, threads or default_threads())
    tower.onnx_path = dst
    card = model.card
    model.card = dataclasses.replace(card, version=f"{card.version}+int8-{key}")
    return model
