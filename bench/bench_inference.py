"""Inference: 200 images of 512x512 through a Unet/resnet34, ours against a naive per-image loop.

Ours is the real path: `Engine(model, spec, device=...)` with its default precision (bf16
autocast on CPUs with AMX or AVX-512 BF16, else fp32), channels_last and batches of
`BATCH` images, driven by `medviewer.inference.proposal.propose`, which also does the
post-processing to a uint8 mask. The baseline is what a script would do: window and normalise
each image, then `model(x)` one (1, 1, 512, 512) fp32 tensor at a time under `torch.no_grad()`,
default memory format, and threshold the sigmoid (the binary form of argmax) to a label map.

On the CPU two more engines run: `backend="onnxruntime"` (the model exported to ONNX once,
cached in a temporary folder, run by ONNX Runtime's CPU provider) and `backend="auto"`, which
times torch at its default precision against ONNX Runtime on sample inputs and keeps the
faster; its row is the timed method it chose. Target for auto: 2.5x the naive loop on CPUs
without AMX, and never slower than the torch default it replaces. `MEDVIEWER_CPU_NO_BF16=1`
takes the fp32 path of CPUs without bf16.

On a GPU the images are `GPU_IMAGES` (more: a GPU needs them to reach its rate) in chunks of
`GPU_CHUNK`; the Engine picks its batch from free memory, prepares the next batch on host
threads while the GPU runs the current one, and post-processes on the GPU (uint8 masks come
back). Target: 3x the naive per-image fp32 loop, and bf16 masks agreeing with fp32 masks on
99.9 % of pixels.

Both sides use the same weights. The Unet is first trained briefly on generated images, because
random weights give probabilities near 0.5 everywhere, where any rounding flips the mask. That
is not representative when we check that bf16 masks agree with fp32 masks.

On a shared machine the load changes from minute to minute. So the 200 images are taken in
chunks of `CHUNK`, and every chunk runs through every method in a rotating order. Each method's
time is the sum over its chunks, so a busy spell hits all methods alike.

Memory: `propose` over 1,000 generated 256x256 images with a Unet/resnet18 (smaller, to keep the
time sane), in chunks, with the process RSS sampled after each chunk.
"""

from __future__ import annotations

import copy
import resource
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from harness import Row

from medviewer.imaging.display import DisplayInfo, Image, Window
from medviewer.inference.calibration import BackendStore, cpu_name
from medviewer.inference.device import pick_device
from medviewer.inference.engine import Engine
from medviewer.inference.preprocess import normalise, to_channels
from medviewer.inference.proposal import propose
from medviewer.models.registry import build_model
from medviewer.models.spec import ModelSpec

NAME = "inference"
SIZE = 512
IMAGES, QUICK_IMAGES = 200, 24
BATCH = 4  # Engine's default
CHUNK = 2 * BATCH  # images per chunk in the interleaved timing
SPEEDUP_TARGET = 1.5  # Engine (default precision) against the naive fp32 loop, CPU
CPU_BACKEND_TARGET = 2.5  # Engine backend=auto against the naive loop, CPUs without AMX
GPU_SPEEDUP_TARGET = 3.0  # Engine (bf16, batch from memory) against the naive loop, GPU
GPU_IMAGES, QUICK_GPU_IMAGES, GPU_CHUNK = 1024, 256, 256  # a GPU needs more to show its rate
PIXEL_TARGET = 0.999  # bf16 (GPU) and ONNX Runtime (CPU) masks against fp32, pixels alike
DICE_TARGET = 0.99  # bf16 masks against fp32 masks, over all images
FP32_DICE_FLOOR = 0.999  # our fp32 masks against the naive fp32 masks: a correctness check
TRAIN_STEPS, TRAIN_BATCH, TRAIN_PATCH, TRAIN_POOL = 40, 8, 96, 24
MEM_SIZE, MEM_IMAGES, QUICK_MEM_IMAGES, MEM_CHUNK = 256, 1000, 200, 20
MEM_WARMUP = 100  # images before the reference RSS sample
MEM_TARGET_MB = 50.0
WINDOW = DisplayInfo(windows=(Window(2048, 4096, "bench"),))  # 12-bit values -> 0..255


def spec_for(encoder: str, size: int) -> ModelSpec:
    return ModelSpec.from_dict(
        {
            "name": f"bench-unet-{encoder}",
            "task": "segmentation",
            "architecture": "Unet",
            "encoder": encoder,
            "in_channels": 1,
            "classes": ["background", "lesion"],
            "input_size": [size, size],
        }
    )


def make_image(seed: int, size: int = SIZE) -> tuple[Image, np.ndarray]:
    """A 12-bit image in uint16: a smooth background, 1-3 bright soft-edged ellipses, noise.

    Returns the image and the truth mask (the ellipses), the same for the same seed.
    """
    rng = np.random.default_rng(seed)
    coarse = rng.normal(0.0, 1.0, (6, 6)).astype(np.float32)
    background = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    truth = np.zeros((size, size), np.uint8)
    margin = size // 12
    for _ in range(int(rng.integers(1, 4))):
        centre = tuple(int(v) for v in rng.integers(margin, size - margin, 2))
        axes = tuple(int(v) for v in rng.integers(size // 40, size // 12, 2))
        cv2.ellipse(truth, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    lesion = cv2.GaussianBlur(truth.astype(np.float32), (0, 0), 1.5)
    values = 1200 + 150 * background + rng.uniform(600, 1000) * lesion
    values += rng.normal(0.0, 120.0, values.shape)
    pixels = np.clip(values, 0, 4095).astype(np.uint16)
    return Image(pixels, WINDOW, source=f"generated-{seed}"), truth


def rss_mb() -> float:
    """Current resident set size in MB (VmRSS); peak RSS where /proc is missing."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --- training, so the masks mean something ----------------------------------------------------


def train_briefly(model: torch.nn.Module, spec: ModelSpec) -> float:
    """A few dozen fp32 Adam steps on 96x96 patches of generated 512x512 images.

    Patches keep it fast; the network is fully convolutional and the patches have the
    benchmark's pixel scale. Returns the seconds spent.
    """
    start = time.perf_counter()
    pool = [make_image(10_000 + i) for i in range(TRAIN_POOL)]  # not the benchmark's seeds
    inputs = [normalise(to_channels(im, spec), spec) for im, _ in pool]
    rng = np.random.default_rng(1)
    optimiser = torch.optim.Adam(model.parameters(), lr=2e-3)
    half, limit = TRAIN_PATCH // 2, SIZE - TRAIN_PATCH
    model.train()
    for _ in range(TRAIN_STEPS):
        xs, ys = [], []
        for _ in range(TRAIN_BATCH):
            k = int(rng.integers(TRAIN_POOL))
            truth = pool[k][1]
            if rng.random() < 0.4:  # centred near a lesion pixel, else anywhere
                rows, cols = np.nonzero(truth)
                j = int(rng.integers(len(rows)))
                jitter = rng.integers(-TRAIN_PATCH // 3, TRAIN_PATCH // 3 + 1, 2)
                cy, cx = rows[j] + jitter[0], cols[j] + jitter[1]
            else:
                cy, cx = rng.integers(0, SIZE, 2)
            y0, x0 = (int(np.clip(c - half, 0, limit)) for c in (cy, cx))
            xs.append(inputs[k][:, y0 : y0 + TRAIN_PATCH, x0 : x0 + TRAIN_PATCH])
            ys.append(truth[None, y0 : y0 + TRAIN_PATCH, x0 : x0 + TRAIN_PATCH])
        x = torch.from_numpy(np.stack(xs))
        y = torch.from_numpy(np.stack(ys)).float()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x)["mask"], y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    return time.perf_counter() - start


# --- the two sides ----------------------------------------------------------------------------


def naive_masks(
    model: torch.nn.Module, spec: ModelSpec, images: list[Image], device: torch.device
) -> list[np.ndarray]:
    """One image at a time, fp32, default memory format: what a script would write."""
    mean, std = np.float32(spec.mean[0]), np.float32(spec.std[0])
    out = []
    with torch.no_grad():
        for im in images:
            # The same window and normalisation as medviewer.inference.preprocess, in numpy.
            w = im.info.windows[0]
            v = im.pixels.astype(np.float32)
            shown = np.rint(((v - (w.center - 0.5)) / (w.width - 1.0) + 0.5) * 255.0)
            x = (np.clip(shown, 0, 255) / 255.0 - mean) / std
            t = torch.from_numpy(x.astype(np.float32)[None, None]).to(device)
            logits = model(t)["mask"]  # (1, 1, H, W): binary, one logit
            mask = torch.sigmoid(logits)[0, 0] >= spec.mask_threshold
            out.append(mask.to(torch.uint8).cpu().numpy())
    return out


def engine_masks(engine: Engine, images: list[Image]) -> list[np.ndarray]:
    return [p.mask for p in propose(engine, images, "bench")]  # type: ignore[misc]


@dataclass
class Timed:
    seconds: float = 0.0
    masks: list[np.ndarray] | None = None


def interleaved(
    methods: dict[str, Callable[[list[Image]], list[np.ndarray]]],
    images: list[Image],
    size: int = CHUNK,
) -> dict[str, Timed]:
    """Every chunk through every method, in an order that rotates from chunk to chunk."""
    names = list(methods)
    result = {n: Timed(masks=[]) for n in names}
    for c, i in enumerate(range(0, len(images), size)):
        chunk = images[i : i + size]
        for n in names[c % len(names) :] + names[: c % len(names)]:
            start = time.perf_counter()
            masks = methods[n](chunk)
            result[n].seconds += time.perf_counter() - start
            result[n].masks += masks  # type: ignore[operator]
    return result


# --- agreement --------------------------------------------------------------------------------


@dataclass
class Agreement:
    pixels: float  # fraction of pixels with the same label
    dice: float  # foreground Dice pooled over all images
    worst: float  # lowest per-image Dice (1 when both masks are empty)


def agreement(a: list[np.ndarray], b: list[np.ndarray]) -> Agreement:
    same = inter = total = 0
    worst = 1.0
    for x, y in zip(a, b, strict=True):
        fx, fy = x > 0, y > 0
        same += int(np.count_nonzero(x == y))
        i, s = int(np.count_nonzero(fx & fy)), int(np.count_nonzero(fx) + np.count_nonzero(fy))
        inter, total = inter + i, total + s
        worst = min(worst, 2 * i / s if s else 1.0)
    n = sum(x.size for x in a)
    return Agreement(same / n, 2 * inter / total if total else 1.0, worst)


# --- the benchmark ----------------------------------------------------------------------------


def throughput(
    model: torch.nn.Module,
    spec: ModelSpec,
    images: list[Image],
    device: torch.device,
    cache: BackendStore | None = None,
) -> tuple[dict[str, Timed], dict[str, Engine]]:
    """Naive loop, Engine at its default precision and Engine fp32, on one device; on the CPU
    also Engine on ONNX Runtime, and Engine backend=auto (the choice is timed as its method).

    On a GPU the Engine picks its batch from free memory and chunks are `GPU_CHUNK` images,
    so the prefetching pipeline runs at its steady rate (a dedicated card needs no
    interleaving against load; it is kept, with fewer, larger chunks)."""
    auto = "auto" if pick_device("auto") == device else str(device)
    cuda = device.type == "cuda"
    batch = None if cuda else BATCH
    engines = {
        "ours": Engine(copy.deepcopy(model), spec, device=auto, batch_size=batch),
        "ours fp32": Engine(
            copy.deepcopy(model), spec, device=auto, batch_size=batch, precision="fp32"
        ),
    }  # Engine moves its model to channels_last in place: each gets its own copy
    if device.type == "cpu":
        # Both with the same cache: exported once, then checked and timed by `auto`.
        for name, backend in (("ours onnxruntime", "onnxruntime"), ("auto", "auto")):
            engines[name] = Engine(
                copy.deepcopy(model), spec, "cpu", BATCH, backend=backend, store=cache
            )
            engines[name].prepare()
    naive_model = copy.deepcopy(model).to(device)
    methods: dict[str, Callable[[list[Image]], list[np.ndarray]]] = {
        "naive": lambda ims: naive_masks(naive_model, spec, ims, device),
        **{
            name: (lambda ims, e=e: engine_masks(e, ims))
            for name, e in engines.items()
            if name != "auto"  # timed as the backend it chose
        },
    }
    size = GPU_CHUNK if cuda else CHUNK
    warm = images[:size] if cuda else [make_image(20_000 + i)[0] for i in range(BATCH)]
    for fn in methods.values():
        fn(warm)  # oneDNN / cuDNN set-up (every batch shape) and autocast caches, untimed
    return interleaved(methods, images, size), engines


def precision_name(engine: Engine) -> str:
    if engine.backend == "onnxruntime":
        return "onnxruntime fp32"
    return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[engine.amp]


def has_amx() -> bool:
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def auto_method(engines: dict[str, Engine]) -> str:
    """The timed method that Engine backend=auto runs as."""
    return "ours onnxruntime" if engines["auto"].backend == "onnxruntime" else "ours"


def throughput_rows(
    timed: dict[str, Timed], engines: dict[str, Engine], device: torch.device, n: int
) -> list[Row]:
    cuda = device.type == "cuda"
    where = "GPU" if cuda else device.type.upper()
    naive, ours, fp32 = timed["naive"].seconds, timed["ours"].seconds, timed["ours fp32"].seconds
    prec = precision_name(engines["ours"])
    rate = {k: n / t.seconds for k, t in timed.items()}
    base = f"naive per-image fp32 ({rate['naive']:.2f} img/s)"
    batch = engines["ours"].batch_size
    size = GPU_CHUNK if cuda else CHUNK
    machine = torch.cuda.get_device_name(device) if cuda else cpu_name()
    note = (
        f"{n} x {SIZE}x{SIZE} on {device} ({machine}); Engine batch {batch}, chunks of {size} "
        f"interleaved; images/s: "
        + ", ".join(f"{k} {v:.2f}" for k, v in rate.items())
        + f"; {torch.get_num_threads()} torch threads"
    )
    target = GPU_SPEEDUP_TARGET if cuda else SPEEDUP_TARGET
    rows = [
        Row(
            NAME,
            f"{where} Engine auto={prec} + propose ({rate['ours']:.2f} img/s)",
            ours,
            base,
            naive,
            f">= {target:g}x",
            naive / ours >= target,
            note,
        ),
        Row(
            NAME,
            f"{where} Engine fp32 + propose ({rate['ours fp32']:.2f} img/s)",
            fp32,
            base,
            naive,
        ),
        Row(
            NAME,
            f"{where} Engine auto={prec}: precision alone",
            ours,
            f"Engine fp32 ({rate['ours fp32']:.2f} img/s)",
            fp32,
        ),
    ]
    if cuda:
        return rows
    onnx = timed["ours onnxruntime"].seconds
    chosen = auto_method(engines)
    picked = engines["auto"]
    amx = has_amx()
    rows += [
        Row(
            NAME,
            f"CPU Engine onnxruntime + propose ({rate['ours onnxruntime']:.2f} img/s)",
            onnx,
            base,
            naive,
        ),
        Row(
            NAME,
            f"CPU Engine backend=auto -> {precision_name(picked)} + propose "
            f"({rate[chosen]:.2f} img/s)",
            timed[chosen].seconds,
            base,
            naive,
            "" if amx else f">= {CPU_BACKEND_TARGET:g}x (no AMX)",
            None if amx else naive / timed[chosen].seconds >= CPU_BACKEND_TARGET,
            f"{cpu_name()}, {'AMX' if amx else 'no AMX'}; auto chose {picked.backend}: "
            f"{picked.backend_note}",
        ),
        Row(
            NAME,
            f"CPU Engine backend=auto against torch {prec} (today's default)",
            timed[chosen].seconds,
            f"Engine torch {prec} ({rate['ours']:.2f} img/s)",
            ours,
            ">= 0.95x (AMX)" if amx else "",
            ours / timed[chosen].seconds >= 0.95 if amx else None,
            "on AMX CPUs never slower than the default it replaces (5 % for timing noise); "
            "elsewhere for information: on a near tie auto keeps ONNX Runtime, which holds its "
            "speed when the cores are shared (medviewer/inference/calibration.py MARGIN)",
        ),
    ]
    return rows


def memory_row(quick: bool, device: str = "auto") -> Row:
    """RSS while `propose` runs over many images in chunks, as a worker thread would."""
    total = QUICK_MEM_IMAGES if quick else MEM_IMAGES
    spec = spec_for("resnet18", MEM_SIZE)
    torch.manual_seed(0)
    engine = Engine(build_model(spec), spec, device=device, batch_size=BATCH)  # random weights
    samples: list[tuple[int, float]] = []
    start = time.perf_counter()
    for i in range(0, total, MEM_CHUNK):
        images = [make_image(30_000 + k, MEM_SIZE)[0] for k in range(i, i + MEM_CHUNK)]
        proposals = propose(engine, images, "bench")
        if len(proposals) != len(images):
            raise RuntimeError(f"{NAME}: propose returned {len(proposals)} for {len(images)}")
        del images, proposals  # a worker saves the proposals and lets them go
        samples.append((i + MEM_CHUNK, rss_mb()))
    seconds = time.perf_counter() - start
    ref = next(mb for done, mb in samples if done >= MEM_WARMUP)
    end, peak = samples[-1][1], max(mb for _, mb in samples)
    growth = end - ref
    return Row(
        NAME,
        f"memory: propose {total} x {MEM_SIZE}x{MEM_SIZE}, RSS growth {growth:+.1f} MB",
        None,
        target=f"< {MEM_TARGET_MB:g} MB growth",
        met=growth < MEM_TARGET_MB,
        note=(
            f"Unet/resnet18 (random weights) at {MEM_SIZE}x{MEM_SIZE}, chunks of {MEM_CHUNK}, "
            f"Engine auto={precision_name(engine)}; VmRSS after {MEM_WARMUP} images {ref:.1f} MB, "
            f"after {total} {end:.1f} MB, peak of samples {peak:.1f} MB; "
            f"{total / seconds:.1f} img/s"
        ),
    )


def run(quick: bool = False, device: str | None = None) -> list[Row]:
    """On the CPU and, where there is one, the GPU; only on `device` when given (cpu, cuda,
    auto), the memory row included."""
    asked = device
    # Memory first, so its RSS figures are not those of a process holding the 512x512 models.
    memory = memory_row(quick, asked or "auto")
    spec = spec_for("resnet34", SIZE)
    torch.manual_seed(0)
    model = build_model(spec)
    train_seconds = train_briefly(model, spec)

    rows: list[Row] = []
    devices = [torch.device("cpu")]
    if torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    if asked is not None:
        devices = [pick_device(asked)]
    for device in devices:
        if device.type == "cuda":
            n = QUICK_GPU_IMAGES if quick else GPU_IMAGES
        else:
            n = QUICK_IMAGES if quick else IMAGES
        data = [make_image(seed) for seed in range(n)]
        images = [im for im, _ in data]
        truth = [t for _, t in data]
        with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
            cache = BackendStore(Path(tmp), Path(tmp) / "calibration.json", spec.name)
            timed, engines = throughput(model, spec, images, device, cache)
        rows += check_rows(timed, engines, device, truth, train_seconds)
        rows += throughput_rows(timed, engines, device, n)
    if asked is None and not torch.cuda.is_available():
        rows.append(
            Row(
                NAME,
                "GPU Engine auto + propose",
                None,
                "naive per-image fp32",
                None,
                note="not measured: no CUDA GPU here",
            )
        )
    rows.append(memory)
    return rows


def check_rows(
    timed: dict[str, Timed],
    engines: dict[str, Engine],
    device: torch.device,
    truth: list[np.ndarray],
    train_seconds: float,
) -> list[Row]:
    """Mask agreement: Engine fp32 against the naive loop must hold (else an error: a wrong
    result is no speed-up); the default precision and ONNX Runtime get rows with targets."""
    n = len(truth)
    naive_m = timed["naive"].masks
    fp32 = agreement(timed["ours fp32"].masks, naive_m)  # type: ignore[arg-type]
    if fp32.dice < FP32_DICE_FLOOR:
        # Not an assert: it must hold under `python -O` too.
        raise RuntimeError(
            f"{NAME}: on {device}, Engine fp32 masks differ from the naive fp32 masks: "
            f"Dice {fp32.dice:.5f} < {FP32_DICE_FLOOR}, pixel agreement {fp32.pixels:.6f}"
        )
    ours = agreement(timed["ours"].masks, naive_m)  # type: ignore[arg-type]
    prec = precision_name(engines["ours"])
    if ours.dice < DICE_TARGET:
        raise RuntimeError(
            f"{NAME}: on {device}, {prec} masks disagree with fp32 masks: Dice {ours.dice:.5f}"
            f" < {DICE_TARGET}, pixel agreement {ours.pixels:.6f}, worst image {ours.worst:.4f}"
        )
    model_dice = agreement(naive_m, truth)  # type: ignore[arg-type]
    where = device.type.upper()
    rows = [
        Row(
            NAME,
            f"{where} {prec} vs fp32 masks: Dice {ours.dice:.5f}, pixels {100 * ours.pixels:.4f} %",
            ours.dice,
            target=f">= {DICE_TARGET:g} Dice, >= {100 * PIXEL_TARGET:g} % pixels",
            met=ours.dice >= DICE_TARGET and ours.pixels >= PIXEL_TARGET,
            note=(
                f"ours = Dice, not seconds. {prec} (Engine auto) against naive fp32 over {n} "
                f"images: Dice {ours.dice:.5f}, worst image {ours.worst:.4f}, pixel agreement "
                f"{100 * ours.pixels:.5f} %. Engine fp32 against naive fp32: Dice "
                f"{fp32.dice:.6f}, pixel agreement {100 * fp32.pixels:.6f} %. Model (fp32) "
                f"against the truth: Dice {model_dice.dice:.3f}, after {TRAIN_STEPS} training "
                f"steps in {train_seconds:.0f} s"
            ),
        )
    ]
    if "ours onnxruntime" in timed:
        onnx = agreement(timed["ours onnxruntime"].masks, naive_m)  # type: ignore[arg-type]
        rows.append(
            Row(
                NAME,
                f"CPU onnxruntime vs torch fp32 masks: pixels {100 * onnx.pixels:.4f} %",
                onnx.pixels,
                target=f">= {100 * PIXEL_TARGET:g} % pixels",
                met=onnx.pixels >= PIXEL_TARGET,
                note=(
                    f"ours = pixel agreement, not seconds. Dice {onnx.dice:.6f}, worst image "
                    f"{onnx.worst:.5f}"
                ),
            )
        )
    return rows
