"""ONNX Runtime on the CPU: the fast CPU path where torch has no fast bf16 (issue 11).

Each model version is exported once (`torch.onnx.export`, TorchScript exporter, opset 17, a
dynamic batch axis) when it is first used on a CPU, checked against torch fp32 on sample
inputs, and cached beside its weights in the version folder:

    models/NAME/VERSION/model.onnx        the exported network (written atomically)
    models/NAME/VERSION/model.onnx.json   what happened: ok (with the file's sha256) or rejected

A rejected export (the exporter failed, or ONNX Runtime's masks or label probabilities differ
from torch's) is recorded with its reason, so it is not retried every time; the record names
the torch and onnxruntime versions, and a new version of either tries again. A cached file that
no longer matches its recorded checksum (truncated, damaged) is exported again.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import logging
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from medviewer.atomic import atomic_write_bytes, atomic_write_json
from medviewer.inference.errors import InferenceError
from medviewer.inference.ondevice import label_maps, probability_tensors
from medviewer.models.spec import ModelSpec

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
RECORD_FILE = "model.onnx.json"
OPSET = 17
PIXEL_AGREEMENT = 0.999  # ONNX Runtime's masks against torch fp32's, over the sample inputs
LABEL_ATOL = 1e-3  # label probabilities, absolute
SAMPLES = 2  # sample inputs; more than one also checks the dynamic batch axis


class OnnxRejected(InferenceError):
    """ONNX Runtime cannot run this model (here): the reason, for the fallback to torch."""


def available() -> str | None:
    """None when onnxruntime can be imported, else why not."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError as e:
        return f"onnxruntime is not installed ({e})"
    return None


@dataclass
class OnnxModel:
    """An ONNX Runtime session with the model's named outputs: x -> {"mask": ..., "labels": ...}
    logits, as the torch model returns them."""

    session: object  # onnxruntime.InferenceSession
    outputs: list[str]
    source: str  # the cached file, or "memory"

    def __call__(self, x: np.ndarray) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(x, dtype=np.float32)
        values = self.session.run(self.outputs, {"input": x})  # type: ignore[attr-defined]
        return dict(zip(self.outputs, values, strict=True))


def _session(data: bytes | str, threads: int) -> object:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: its warnings are not the user's business
    # Idle threads sleep instead of spinning between operators: a desktop shares its cores
    # with the GUI and the image loaders, and a forward pass is long enough not to notice.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def _key(spec: ModelSpec) -> dict:
    """What an export depends on besides the (immutable) weights of a version."""
    import onnxruntime

    return {
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "opset": OPSET,
        "input": [spec.network_channels, *spec.input_size],
    }


class _Outputs(torch.nn.Module):
    """The model's dict output as a tuple, in a fixed order (ONNX outputs are positional)."""

    def __init__(self, model: torch.nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(x)
        return tuple(out[k] for k in self.names)


def sample_inputs(spec: ModelSpec, n: int = SAMPLES, seed: int = 0) -> np.ndarray:
    """(n, C, H, W) normalised inputs that look like images: smooth shapes plus noise."""
    g = torch.Generator().manual_seed(seed)
    h, w = spec.input_size
    coarse = torch.rand((n, spec.network_channels, 6, 6), generator=g)
    x = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    x = (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    mean = torch.tensor(spec.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=torch.float32).view(1, -1, 1, 1)
    image = (x[:, : spec.in_channels] - mean) / std
    guidance = (x[:, spec.in_channels :] > 0.8).float()  # click-like patches, 0 or 1
    return torch.cat([image, guidance], dim=1).numpy()


def export(model: torch.nn.Module, spec: ModelSpec) -> tuple[bytes, list[str]]:
    """The model (fp32, CPU) as ONNX bytes and its output names. The engine's model is not
    touched: a contiguous fp32 copy is exported."""
    net = copy.deepcopy(model).to("cpu", torch.float32, memory_format=torch.contiguous_format)
    net.eval()
    x = torch.from_numpy(sample_inputs(spec, 1))
    with torch.no_grad():
        names = list(net(x))
    wrapped = _Outputs(net, names).eval()
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter is deprecated in favour of torch.export's; it is the one
        # that handles these models with a dynamic batch axis today (see docs/PERFORMANCE.md).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            wrapped,
            (x,),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=["input"],
            output_names=names,
            dynamic_axes={"input": {0: "batch"}, **{k: {0: "batch"} for k in names}},
        )
    return buffer.getvalue(), names


def check(model: torch.nn.Module, onnx: OnnxModel, spec: ModelSpec) -> str | None:
    """None when ONNX Runtime agrees with torch fp32 on the sample inputs, else why not."""
    x = sample_inputs(spec)
    # The engine's model (eval, on the CPU), channels_last as the engine runs it: the NCHW
    # fp32 path of some CPUs is many times slower for depthwise convolutions.
    xt = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
    training = model.training
    try:
        model.eval()
        with torch.no_grad(), torch.autocast("cpu", enabled=False):
            ref = probability_tensors(model(xt), spec)
    finally:
        model.train(training)
    got = probability_tensors({k: torch.from_numpy(v) for k, v in onnx(x).items()}, spec)
    if set(got) != set(ref):
        return f"ONNX outputs {sorted(got)} differ from torch's {sorted(ref)}"
    if "mask" in ref:
        a, b = (
            label_maps(ref["mask"], spec.mask_threshold),
            label_maps(got["mask"], spec.mask_threshold),
        )
        agree = float((a == b).float().mean())
        if not agree >= PIXEL_AGREEMENT:
            return (
                f"ONNX Runtime's masks agree with torch fp32 on {100 * agree:.3f} % of pixels "
                f"(< {100 * PIXEL_AGREEMENT:g} %)"
            )
    if "labels" in ref:
        diff = float((ref["labels"] - got["labels"]).abs().max())
        if not diff <= LABEL_ATOL:
            return f"ONNX Runtime's label probabilities differ from torch fp32 by {diff:.2g}"
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_record(path: Path) -> dict | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _write_record(path: Path, record: dict) -> None:
    try:
        atomic_write_json(path, record)
    except OSError as e:  # a read-only workspace: the session still runs, from memory
        log.warning("could not record the ONNX export in %s: %s", path, e)


def load(
    model: torch.nn.Module,
    spec: ModelSpec,
    folder: Path | None,
    threads: int,
    *,
    readonly: bool = False,
    checker: object = None,
) -> OnnxModel:
    """The model as an ONNX Runtime session, from the cache in `folder` (the version folder;
    None: export in memory, cache nothing; `readonly`: use the cache, write nothing). Raises
    OnnxRejected with the reason when ONNX Runtime cannot be used for it; a rejection is
    recorded and raised again without retrying. `checker` replaces `check` (tests)."""
    why = available()
    if why:
        raise OnnxRejected(why)
    verify = checker or check
    key = _key(spec)
    file = folder / ONNX_FILE if folder is not None else None
    record_path = folder / RECORD_FILE if folder is not None else None
    record = _read_record(record_path) if record_path is not None else None
    writable = record_path if not readonly else None
    if record is not None and record.get("key") == key and file is not None:
        if record.get("status") == "rejected":
            raise OnnxRejected(
                f"{record.get('reason')} (recorded in {record_path}; delete it to try again)"
            )
        damage = _damage(file, record)
        if damage is None:
            try:
                return OnnxModel(_session(str(file), threads), record["outputs"], str(file))
            except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
                damage = f"ONNX Runtime could not load it ({type(e).__name__}: {e})"
        log.warning("cached ONNX model %s is unusable: %s; exporting it again", file, damage)
    start = time.perf_counter()
    try:
        data, names = export(model, spec)
        onnx = OnnxModel(_session(data, threads), names, "memory")
    except Exception as e:  # the exporter and onnxruntime raise many types
        first = (str(e).splitlines() or [""])[0][:300]
        reason = f"the ONNX export failed ({type(e).__name__}: {first})"
        _reject(writable, key, reason)
        raise OnnxRejected(reason) from e
    reason = verify(model, onnx, spec)  # type: ignore[operator]
    if reason:
        _reject(writable, key, reason)
        raise OnnxRejected(reason)
    if file is not None and writable is not None:
        try:
            atomic_write_bytes(file, data)
        except OSError as e:
            log.warning("could not cache the ONNX model in %s: %s", file, e)
        else:
            onnx.source = str(file)
            _write_record(
                writable,
                {
                    "key": key,
                    "status": "ok",
                    "outputs": names,
                    "bytes": len(data),
                    "sha256": hashlib.sha256(data).hexdigest(),
                    "export_seconds": round(time.perf_counter() - start, 2),
                },
            )
    return onnx


def _damage(file: Path, record: dict) -> str | None:
    """Why a cached file cannot be trusted, or None."""
    try:
        size = file.stat().st_size
    except OSError:
        return "the file is missing"
    if size != record.get("bytes"):
        return f"it has {size} bytes, {record.get('bytes')} were written"
    if _sha256(file) != record.get("sha256"):
        return "its checksum differs from the one recorded when it was written"
    if not isinstance(record.get("outputs"), list):
        return "its record names no outputs"
    return None


def _reject(record_path: Path | None, key: dict, reason: str) -> None:
    log.warning("ONNX Runtime not used: %s", reason)
    if record_path is not None:
        _write_record(record_path, {"key": key, "status": "rejected", "reason": reason})
