"""Runs a model on images: device, backend, batching, channels_last, autocast; outputs at
native size.

The pipeline per batch: the host prepares the input (`feed`: on a GPU on worker threads, one
batch ahead, into pinned memory), the backend runs the network (torch on any device, or ONNX
Runtime on a CPU), and `ondevice.decide` turns probabilities into label maps, the uncertainty
score and class counts where they are, so a GPU sends back a byte per pixel, not float maps.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from medviewer.imaging.display import Image
from medviewer.inference import calibration, onnx_backend
from medviewer.inference.calibration import BackendStore
from medviewer.inference.device import autocast_dtype, pick_device
from medviewer.inference.errors import InferenceError
from medviewer.inference.feed import BatchFeed, prep_workers
from medviewer.inference.ondevice import Decided, Pending, decide, probability_tensors
from medviewer.inference.preprocess import normalise, tiles, to_channels, with_guidance
from medviewer.models.model_budget import ModelBudget
from medviewer.models.registry import MedModel, estimate_memory
from medviewer.models.spec import ModelSpec

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime")
CPU_BATCH = 4
CALIBRATION_BATCH = 2
MAX_GPU_BATCH = 64
GPU_MEMORY_SHARE = 0.5  # of the free memory, for a batch's activations (the rest: post-processing)


@dataclass
class RawOutput:
    """What the network said about one image, at the image's native size."""

    probs: np.ndarray | None  # (C, H, W) class probabilities; None when the engine drops them
    label_probs: dict[str, float]
    labels: np.ndarray | None = None  # uint8 (H, W) threshold / argmax of probs, not cleaned
    uncertainty: float | None = None  # mean normalised pixel entropy of probs
    class_pixels: np.ndarray | None = None  # (C,) pixels of each class in `labels`


def probabilities(out: dict[str, torch.Tensor], spec: ModelSpec) -> dict[str, np.ndarray]:
    """Network output -> probabilities: {"mask": (N, classes, H, W), "labels": (N, L)}.

    The one conversion inference and training's validation share. A binary segmenter has one
    logit channel, returned as [background, foreground].
    """
    return {k: v.cpu().numpy() for k, v in probability_tensors(out, spec).items()}


class Engine:
    """Owns one model on one device. Not thread-safe: one worker thread drives it.

    backend: "torch"; "onnxruntime" (CPU only; falls back to torch, saying why in
    `backend_note`, when the export fails or disagrees with torch); "auto": on a CPU the faster
    of the two on this machine (`calibration`), elsewhere torch. `store` says where the ONNX
    file and the calibration are kept (None: in memory only). The backend is set up on the
    first run, on the thread that runs the model.

    batch_size None: 4 on a CPU; on a GPU as many as half its free memory holds (up to 64).
    On a CPU the batch is cut to what the model budget holds (`budget`, by default from the
    environment); a GPU's batch follows its own memory, probed.
    keep_probs None: float maps at native size are returned on a CPU (they are in host memory
    anyway) and dropped on a GPU (label maps, uncertainty and counts come back instead).
    """

    def __init__(
        self,
        model: MedModel,
        spec: ModelSpec,
        device: str | torch.device = "auto",
        batch_size: int | None = None,
        precision: str = "auto",
        *,
        backend: str = "torch",
        store: BackendStore | None = None,
        keep_probs: bool | None = None,
        budget: ModelBudget | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise InferenceError(f"unknown backend {backend!r}; valid: {', '.join(BACKENDS)}")
        self.spec = spec
        self.device = pick_device(device)
        if backend == "onnxruntime" and self.device.type != "cpu":
            raise InferenceError(
                f"the onnxruntime backend runs on the CPU, not on {self.device}; "
                "use --device cpu or --backend torch"
            )
        self.precision = precision
        self.amp = autocast_dtype(self.device, precision)
        self.cuda = self.device.type == "cuda"
        self._batch_from_memory = batch_size is None and self.cuda
        self.batch_size = max(1, batch_size or CPU_BATCH)
        estimate = estimate_memory(spec) if not self.cuda else None
        if estimate is not None:
            budget = budget or ModelBudget.from_env()
            self.batch_size = budget.largest_batch(estimate, self.batch_size, f"model {spec.name}")
        self.keep_probs = (not self.cuda) if keep_probs is None else keep_probs
        self.requested_backend = backend
        self.store = store
        self.backend: str | None = None  # "torch" or "onnxruntime" once set up
        self.backend_note = ""  # why that backend, for the CLI and the status bar
        self._onnx: onnx_backend.OnnxModel | None = None
        if self.device.type == "cpu" and not os.environ.get("OMP_NUM_THREADS"):
            torch.set_num_threads(max(1, os.cpu_count() or 1))
        if self.cuda:
            torch.backends.cudnn.benchmark = True  # fixed input size: pick the fastest kernels
        self.model = model.eval().to(self.device, memory_format=torch.channels_last)

    # --- the backend ----------------------------------------------------------------------

    def prepare(self) -> str:
        """Set up the backend now (export, check, calibrate as needed); returns its name."""
        if self.backend is None:
            self.backend, self.backend_note = self._choose()
            log.info("%s: backend %s (%s)", self.spec.name, self.backend, self.backend_note)
        if self._batch_from_memory:
            self._batch_from_memory = False
            self.batch_size = self._gpu_batch()
        return self.backend

    def _choose(self) -> tuple[str, str]:
        wanted = self.requested_backend
        if self.device.type != "cpu":
            return "torch", f"on {self.device}"
        if wanted == "torch":
            return "torch", "asked for"
        if wanted == "auto" and self.precision not in ("auto", "fp32"):
            return "torch", f"precision {self.precision} asked for"
        threads = torch.get_num_threads()
        store = self.store or BackendStore(None, None, self.spec.name)
        fingerprint = calibration.machine_fingerprint(threads)
        known = None
        if wanted == "auto":
            known = calibration.read(store.calibration, store.model, fingerprint)
            if known is not None and known["backend"] == "torch":
                return "torch", f"recorded: {known.get('why', 'faster here')}"
        try:
            self._onnx = onnx_backend.load(
                self.model, self.spec, store.folder, threads, readonly=store.readonly
            )
        except onnx_backend.OnnxRejected as e:
            if wanted == "auto":
                _record(
                    store, fingerprint, {"backend": "torch", "why": f"ONNX Runtime not usable: {e}"}
                )
            return "torch", f"ONNX Runtime not usable: {e}"
        if wanted == "onnxruntime":
            return "onnxruntime", "asked for"
        if known is not None:
            return "onnxruntime", f"recorded: {known.get('why', 'faster here')}"
        return self._calibrate(store, fingerprint)

    def _calibrate(self, store: BackendStore, fingerprint: str) -> tuple[str, str]:
        # Two images: enough to time a batch, half the one-off cost of four at 512x512.
        n = min(self.batch_size, CALIBRATION_BATCH)
        x = torch.from_numpy(onnx_backend.sample_inputs(self.spec, n, seed=1))
        torch_name = f"torch {'bf16' if self.amp == torch.bfloat16 else 'fp32'}"
        onnx = self._onnx
        self._onnx = None
        seconds = calibration.time_backends(
            {
                torch_name: lambda: self._forward_torch(x),
                "onnxruntime": lambda: self._run_onnx(x, onnx),
            }
        )
        choice = calibration.faster(seconds)
        timing = ", ".join(f"{k} {v * 1000 / len(x):.0f} ms/image" for k, v in seconds.items())
        why = f"calibrated: {timing}"
        backend = "onnxruntime" if choice == "onnxruntime" else "torch"
        self._onnx = onnx if backend == "onnxruntime" else None
        _record(
            store,
            fingerprint,
            {"backend": backend, "why": why, "seconds": seconds, "batch": len(x)},
        )
        return backend, why

    def _gpu_batch(self) -> int:
        """The batch that half the free GPU memory holds, from a probe of two images; a power
        of two, so cuDNN's benchmark meets few shapes."""
        probe = 2
        h, w = self.spec.input_size
        torch.cuda.synchronize(self.device)
        before = torch.cuda.memory_allocated(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        try:
            x = torch.zeros((probe, self.spec.network_channels, h, w), device=self.device)
            decide(self._forward_torch(x), [(h, w)] * probe, self.spec).finish()
        except torch.OutOfMemoryError:
            torch.cuda.empty_cache()
            return 1
        per_image = max(1, (torch.cuda.max_memory_allocated(self.device) - before) // probe)
        free, _ = torch.cuda.mem_get_info(self.device)
        free += torch.cuda.memory_reserved(self.device) - torch.cuda.memory_allocated(self.device)
        n = max(1, min(MAX_GPU_BATCH, int(GPU_MEMORY_SHARE * free) // per_image))
        return 1 << (n.bit_length() - 1)

    # --- running --------------------------------------------------------------------------

    @torch.inference_mode()
    def forward(self, batch: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        """(N, C, H, W) normalised input -> {"mask": (N, classes, H, W), "labels": (N, L)}
        probabilities, float32 tensors on the engine's device."""
        self.prepare()
        if self._onnx is not None:
            return self._run_onnx(batch, self._onnx)
        return self._forward_torch(batch)

    @torch.inference_mode()
    def _forward_torch(self, batch: np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        x = torch.as_tensor(batch).to(self.device, non_blocking=True)
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(self.device.type, dtype=self.amp, enabled=self.amp is not None):
            out = self.model(x)
        return probability_tensors(out, self.spec)

    def _run_onnx(
        self, batch: np.ndarray | torch.Tensor, onnx: onnx_backend.OnnxModel | None
    ) -> dict[str, torch.Tensor]:
        x = batch.numpy() if isinstance(batch, torch.Tensor) else batch
        out = {k: torch.from_numpy(v) for k, v in onnx(x).items()}  # type: ignore[misc]
        return probability_tensors(out, self.spec)

    @torch.inference_mode()
    def run(self, images: list[Image]) -> list[RawOutput]:
        """Outputs for each image at its native size; batches of `batch_size`, with a retry at
        half the batch when a GPU runs out of memory."""
        if not images:
            return []
        if self.spec.large_image == "tile":
            prepared = [to_channels(im, self.spec) for im in images]
            return [self._run_tiled(x) for x in prepared]
        self.prepare()
        feed = BatchFeed(
            images,
            self.spec,
            self.batch_size,
            pinned=self.cuda,
            workers=prep_workers() if self.cuda else 0,
        )
        results: list[RawOutput] = []
        in_flight: deque[Pending] = deque()
        size = self.batch_size
        for batch in feed:

            def step(a: int, b: int, x: torch.Tensor = batch.x, sizes: list = batch.sizes) -> None:
                in_flight.append(
                    decide(self.forward(x[a:b]), sizes[a:b], self.spec, self.keep_probs)
                )

            size = self._in_chunks(len(batch.x), size, step)
            # On a GPU one batch stays in flight while the previous one is read back.
            while len(in_flight) > (1 if self.cuda else 0):
                results += self._outputs(in_flight.popleft().finish())
        while in_flight:
            results += self._outputs(in_flight.popleft().finish())
        return results

    def _in_chunks(self, n: int, size: int, step: Callable[[int, int], None]) -> int:
        """step(a, b) over consecutive chunks of at most `size` of n items, halving the size when
        the device runs out of memory; returns the size that worked. On a GPU chunks are powers
        of two (13 = 8 + 4 + 1), so cuDNN's benchmark meets few shapes."""
        a = 0
        while a < n:
            b = a + min(size, n - a)
            if self.cuda:
                b = a + (1 << ((b - a).bit_length() - 1))
            try:
                step(a, b)
            except torch.OutOfMemoryError as e:
                if self.cuda:
                    torch.cuda.empty_cache()
                if size == 1:
                    raise InferenceError(
                        f"out of memory on {self.device} even with one image at a time"
                    ) from e
                size = max(1, size // 2)
                continue
            a = b
        return size

    def _outputs(self, decided: list[Decided]) -> list[RawOutput]:
        return [
            RawOutput(
                d.probs,
                self._labels(d.label_probs) if d.label_probs is not None else {},
                d.labels,
                d.uncertainty,
                d.class_pixels,
            )
            for d in decided
        ]

    def _labels(self, probs: np.ndarray) -> dict[str, float]:
        return {name: float(p) for name, p in zip(self.spec.labels, probs, strict=True)}

    def _run_tiled(self, x: np.ndarray) -> RawOutput:
        """Sliding window at native resolution; overlapping tiles are averaged with weights that
        fall off towards tile edges, where the network sees least context."""
        th, tw = self.spec.input_size
        h, w = x.shape[:2]
        pad_h, pad_w = max(0, th - h), max(0, tw - w)
        if pad_h or pad_w:
            x = np.pad(x, ((0, pad_h), (0, pad_w), (0, 0)), mode="reflect")
        H, W = x.shape[:2]
        corners = tiles(H, W, (th, tw), self.spec.tile_overlap)
        batch = np.stack(
            [
                with_guidance(normalise(x[y : y + th, c : c + tw], self.spec), self.spec)
                for y, c in corners
            ]
        )
        self.prepare()
        parts: list[dict[str, torch.Tensor]] = []

        def step(a: int, b: int) -> None:
            parts.append(self.forward(batch[a:b]))

        self._in_chunks(len(batch), self.batch_size, step)
        outs = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        native: dict[str, torch.Tensor] = {}
        if "mask" in outs:
            hann = np.outer(np.hanning(th + 2)[1:-1], np.hanning(tw + 2)[1:-1]).astype(np.float32)
            weight = torch.from_numpy(hann).to(self.device)
            acc = torch.zeros((outs["mask"].shape[1], H, W), device=self.device)
            norm = torch.zeros((H, W), device=self.device)
            for k, (y, c) in enumerate(corners):
                acc[:, y : y + th, c : c + tw] += outs["mask"][k] * weight
                norm[y : y + th, c : c + tw] += weight
            native["mask"] = (acc / norm.clamp_min(1e-6))[None, :, :h, :w]
        # A finding anywhere is a finding: label probabilities are the maximum over tiles.
        if "labels" in outs:
            native["labels"] = outs["labels"].max(dim=0).values[None]
        return self._outputs(decide(native, [(h, w)], self.spec, self.keep_probs).finish())[0]


def _record(store: BackendStore, fingerprint: str, entry: dict) -> None:
    if not store.readonly:
        calibration.record(store.calibration, store.model, fingerprint, entry)
