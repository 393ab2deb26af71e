"""The training loop: AdamW with cosine decay, optional warm-up with the encoder frozen, early
stopping on the validation metric, a checkpoint per epoch (resumable after a kill), DDP-ready.

`fit` knows nothing of workspaces: it takes prepared arrays, so tests and benchmarks drive it
directly; medviewer.training.__main__ turns a job file into a call of `fit` and a new version.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from medviewer.atomic import atomic_write
from medviewer.inference.click_robot import next_click
from medviewer.inference.clicks import Box, encode
from medviewer.inference.device import pick_device
from medviewer.inference.ondevice import label_maps, probability_tensors
from medviewer.models.registry import MedModel
from medviewer.models.spec import ModelSpec
from medviewer.training.click_metrics import with_click_score
from medviewer.training.data import Prepared, TrainingError, TrainingSet
from medviewer.training.losses import build_criterion
from medviewer.training.metrics import evaluate, training_autocast
from medviewer.training.protocol import Batch, Epoch, Event, TrainConfig

Emit = Callable[[Event], None]
MAX_CLICK_ROUNDS = 2  # a guided model's batch: 0..2 rounds of the model answering its clicks


@dataclass(frozen=True)
class Dist:
    """Where this process sits in a torchrun group. The leader (rank 0 on one node; local
    rank 0 of node 0 on several, as `training.__main__` finds it) validates, prints, writes
    checkpoints and registers."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    leader: int = 0  # the global rank of the leader

    @property
    def main(self) -> bool:
        return self.rank == self.leader


@dataclass
class FitResult:
    state: dict[str, torch.Tensor]  # the best weights, on the CPU
    metrics: dict[str, Any]  # validation metrics of the best epoch
    best_epoch: int
    epochs_run: int
    resumed_from: int
    history: list[dict[str, Any]] = field(default_factory=list)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def device_for(preference: str, dist: Dist, local_world: int | None = None) -> torch.device:
    """This process's device. Under DDP one CUDA GPU per rank, the one its LOCAL_RANK numbers
    (never cuda:1 on a one-GPU machine: more ranks on a machine than GPUs is refused, naming
    both counts), or the CPU (gloo) when asked or when there is no GPU. `local_world`: how many
    ranks run on this machine (torchrun's LOCAL_WORLD_SIZE), for the message."""
    if dist.world > 1 and preference == "auto" and not torch.cuda.is_available():
        return torch.device("cpu")  # DDP runs on CUDA GPUs or on the CPU, not on MPS
    device = pick_device(preference)
    if device.type == "cuda":
        count = torch.cuda.device_count()
        if dist.world > 1:
            ranks = max(local_world or 0, dist.local_rank + 1)
            if ranks > count:
                raise TrainingError(
                    f"{ranks} training processes on this machine but {count} CUDA GPU"
                    f"{'s' if count != 1 else ''}: distributed training uses one GPU per process; "
                    f"start at most {count} (torchrun --nproc_per_node={count}) or train on the "
                    "CPU (device cpu)"
                )
            return torch.device("cuda", dist.local_rank)
        if device.index is not None and device.index >= count:
            raise TrainingError(f"device {device} asked for, but this machine has {count} GPU(s)")
    elif dist.world > 1 and device.type != "cpu":
        raise TrainingError(f"distributed training runs on CUDA GPUs or the CPU, not {device}")
    return device


# -- checkpoints -----------------------------------------------------------------------------

_LATEST = "latest.json"


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").clone().contiguous() for k, v in state.items()}


def save_run_checkpoint(
    folder: Path, epoch: int, model: nn.Module, best: dict, extra: dict, meta: dict
) -> None:
    """Epoch `epoch` into its own folder, then `latest.json` points at it (one atomic rename),
    then older folders go: a kill at any moment leaves one complete checkpoint."""
    target = folder / f"epoch-{epoch:04d}"
    target.mkdir(parents=True, exist_ok=True)
    weights = _cpu(model.state_dict())
    atomic_write(target / "model.safetensors", lambda p: save_file(weights, str(p)))
    atomic_write(target / "best.safetensors", lambda p: save_file(best, str(p)))
    atomic_write(target / "state.pt", lambda p: torch.save(extra, p))
    atomic_write(target / "meta.json", lambda p: p.write_text(json.dumps(meta)))
    atomic_write(folder / _LATEST, lambda p: p.write_text(json.dumps({"folder": target.name})))
    for old in folder.glob("epoch-*"):
        if old != target:
            shutil.rmtree(old, ignore_errors=True)


def load_run_checkpoint(folder: Path) -> tuple[Path, dict] | None:
    """The latest complete checkpoint folder and its meta, or None when there is none."""
    try:
        target = folder / json.loads((folder / _LATEST).read_text())["folder"]
        return target, json.loads((target / "meta.json").read_text())
    except (OSError, ValueError, KeyError):
        return None


# -- the loop --------------------------------------------------------------------------------


def _batches(indices: list[int], size: int) -> list[list[int]]:
    out = [indices[i : i + size] for i in range(0, len(indices), size)]
    if len(out) > 1 and len(out[-1]) == 1:
        # BatchNorm cannot train on one image whose features shrink to 1x1; join it up.
        out[-2].extend(out.pop())
    return out


def _cosine(steps: int) -> Callable[[int], float]:
    return lambda s: 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(s, steps) / max(1, steps)))


def _adamw(groups: list[dict], cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW, fused where torch has a fused kernel: on the CPU its step on a ResNet-18 U-Net
    takes a quarter of the time of the default loop over tensors (~18% of a whole step)."""
    kw = {"lr": cfg.lr, "weight_decay": cfg.weight_decay}
    if device.type in ("cpu", "cuda"):
        try:
            return torch.optim.AdamW(groups, fused=True, **kw)
        except (RuntimeError, TypeError, ValueError):
            pass  # an older torch or an unsupported dtype: the default implementation
    return torch.optim.AdamW(groups, **kw)


def fit(
    model: MedModel,
    spec: ModelSpec,
    train: Prepared,
    val: Prepared,
    cfg: TrainConfig,
    *,
    emit: Emit | None = None,
    run_dir: Path | None = None,
    dist: Dist = Dist(),
    after_epoch: Callable[[int], None] | None = None,
) -> FitResult:
    """Train `model` in place; returns the best weights by validation score (resumes from
    `run_dir` when it holds a checkpoint). `after_epoch(epoch)` runs after each checkpoint."""
    cfg.check()
    return _Run(model, spec, train, val, cfg, emit, run_dir, dist).run(after_epoch)


class _Run:
    """The state of one training run: what a checkpoint holds and a resume restores."""

    def __init__(
        self, model: MedModel, spec: ModelSpec, train: Prepared, val: Prepared, cfg: TrainConfig,
        emit: Emit | None, run_dir: Path | None, dist: Dist,
    ) -> None:  # fmt: skip
        self.model, self.spec, self.cfg, self.dist = model, spec, cfg, dist
        self.emit = emit if emit is not None and dist.main else (lambda event: None)
        self.run_dir = run_dir
        self.device = device_for(cfg.device, dist)
        seed_everything(cfg.seed)
        # channels_last, as inference runs: oneDNN's CPU convolutions and tensor cores are
        # faster on it (~8% a step for a ResNet-18 U-Net at 128x128 on the CPU).
        model.to(self.device, memory_format=torch.channels_last)
        # bf16 where the GPU has it (autocast_dtype decides), fp32 on the CPU.
        self.amp = training_autocast(self.device)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input size: pick the fastest kernels
        masks, labels = train.masks[train.has_mask], (train.labels, train.label_known)
        self.criterion = build_criterion(spec, cfg.loss, masks, labels, cfg.class_weights)
        self.criterion.to(self.device)
        self.train_set = TrainingSet(train, augment=cfg.augment, seed=cfg.seed, clicks=True)
        self.val_set = TrainingSet(val)  # a guided model's score: its proposals without clicks
        self.val = val
        self.sampler = torch.utils.data.DistributedSampler(
            self.train_set, num_replicas=dist.world, rank=dist.rank, shuffle=True, seed=cfg.seed
        )
        self.steps = len(_batches(list(range(len(self.sampler))), cfg.batch_size))
        self.encoder = list(model.encoder.parameters())
        ids = {id(p) for p in self.encoder}
        rest = [p for p in model.parameters() if id(p) not in ids]
        self.opt = _adamw([{"params": self.encoder}, {"params": rest}], cfg, self.device)
        cosine = _cosine(cfg.epochs * self.steps)
        frozen = cfg.freeze_encoder_epochs * self.steps
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, [lambda s: 0.0 if s < frozen else cosine(s), cosine]
        )
        # Loss scaling only for fp16, whose range is narrow; bf16 has fp32's range.
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp == torch.float16)
        self.net: nn.Module = model
        if dist.world > 1:
            ids_ = [self.device.index] if self.device.type == "cuda" else None
            self.net = nn.parallel.DistributedDataParallel(model, device_ids=ids_)
        self.meta: dict[str, Any] = {"epoch": -1, "best_score": -math.inf, "best_epoch": -1,
                                     "bad_epochs": 0, "stopped": False, "history": [],
                                     "best_metrics": {}, "config": asdict(cfg)}  # fmt: skip
        self.best = _cpu(model.state_dict())

    def run(self, after_epoch: Callable[[int], None] | None) -> FitResult:
        found = load_run_checkpoint(self.run_dir / "checkpoint") if self.run_dir else None
        if found:
            self._restore(*found)
        resumed_from = self.meta["epoch"] + 1
        for epoch in range(resumed_from, self.cfg.epochs):
            if self.meta["stopped"]:
                break
            self._epoch(epoch)
            if after_epoch is not None:
                after_epoch(epoch)
        for p in self.encoder:
            p.requires_grad_(True)
        m = self.meta
        return FitResult(self.best, m["best_metrics"], m["best_epoch"] + 1, len(m["history"]),
                         resumed_from, m["history"])  # fmt: skip

    def _restore(self, folder: Path, meta: dict[str, Any]) -> None:
        device = self.device
        self.model.load_state_dict(load_file(str(folder / "model.safetensors"), str(device)))
        self.best = load_file(str(folder / "best.safetensors"))
        extra = torch.load(folder / "state.pt", map_location=device, weights_only=True)
        self.opt.load_state_dict(extra["optimizer"])
        self.sched.load_state_dict(extra["scheduler"])
        if extra["scaler"]:  # empty when saved by a run without loss scaling
            self.scaler.load_state_dict(extra["scaler"])
        self.meta = meta

    def _epoch(self, epoch: int) -> None:
        cfg, meta, t0 = self.cfg, self.meta, time.perf_counter()
        seed_everything(cfg.seed + epoch)  # a resumed epoch draws what it would have drawn
        self.sampler.set_epoch(epoch)
        self.train_set.set_epoch(epoch)
        train_loss = _mean_over_ranks(self._train(epoch), self.device, self.dist)
        metrics: dict[str, Any] = {}
        if self.dist.main:
            metrics = evaluate(self.model, self.val_set, self.spec, self.device, cfg.batch_size,
                               self.criterion)  # fmt: skip
            # A guided model's score: the mean of its Dice without clicks and after 3 clicks.
            metrics = with_click_score(self.model, self.val, metrics, self.spec, self.device,
                                       cfg.batch_size)  # fmt: skip
        score = _from_main(metrics.get("score", 0.0), self.device, self.dist)
        if score > meta["best_score"]:
            meta.update(best_score=score, best_epoch=epoch, bad_epochs=0, best_metrics=metrics)
            self.best = _cpu(self.model.state_dict())
        else:
            meta["bad_epochs"] += 1
        meta["stopped"] = cfg.patience > 0 and meta["bad_epochs"] >= cfg.patience
        meta["epoch"] = epoch
        record = Epoch(epoch + 1, cfg.epochs, train_loss, metrics.get("loss"),
                       metrics.get("score"), time.perf_counter() - t0, metrics)  # fmt: skip
        meta["history"].append(
            {k: v for k, v in record.to_dict().items() if k not in ("event", "metrics")}
        )
        if self.run_dir is not None and self.dist.main:
            extra = {"optimizer": self.opt.state_dict(), "scheduler": self.sched.state_dict(),
                     "scaler": self.scaler.state_dict()}  # fmt: skip
            save_run_checkpoint(self.run_dir / "checkpoint", epoch, self.model, self.best,
                                extra, meta)  # fmt: skip
        self.emit(record)

    def _train(self, epoch: int) -> float:
        """One pass over this rank's share of the training set; the mean loss."""
        frozen = epoch < self.cfg.freeze_encoder_epochs
        if self.dist.world == 1:
            for p in self.encoder:  # skips the encoder's backward; DDP relies on lr 0 instead
                p.requires_grad_(not frozen)
        self.model.train()
        if frozen:
            self.model.encoder.eval()  # frozen BatchNorm statistics too
        total, last_emit, device = 0.0, 0.0, self.device
        for step, idx in enumerate(_batches(list(self.sampler), self.cfg.batch_size), 1):
            batch = {k: v.to(device) for k, v in self.train_set.batch(idx).items()}
            x = batch["image"].contiguous(memory_format=torch.channels_last)
            if "click_class" in batch:
                rng = np.random.default_rng([self.cfg.seed, epoch, step, 2])
                x = self._more_clicks(x, batch, int(rng.integers(0, MAX_CLICK_ROUNDS + 1)))
            with torch.autocast(device.type, dtype=self.amp, enabled=self.amp is not None):
                out = self.net(x)
            loss = self.criterion(out, batch)
            value = loss.item()
            if not math.isfinite(value):
                raise TrainingError(
                    f"training diverged (loss {value}) in epoch {epoch + 1}, step {step}; "
                    f"try a lower learning rate than {self.cfg.lr}"
                )
            self.opt.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.opt)
            self.scaler.update()
            self.sched.step()
            total += value
            now = time.perf_counter()
            if step == self.steps or now - last_emit > 0.25:  # a live plot, not a flood
                last_emit = now
                self.emit(Batch(epoch + 1, step, self.steps, value))
        return total / self.steps

    @torch.no_grad()
    def _more_clicks(self, x: torch.Tensor, batch: dict, rounds: int) -> torch.Tensor:
        """RITM's iterative training: the model answers the clicks it has, the robot adds the
        next click on that answer's errors (and, with `guidance_prev_mask`, the answer becomes
        the previous mask), `rounds` times; the step then learns from the last state. Clicks
        are placed in the input's own pixels: the sample is already the crop it shows."""
        spec, values = self.spec, batch["click_class"].cpu().numpy()
        h, w = spec.input_size
        whole = Box(0, 0, h, w)
        truth = batch["mask"].cpu().numpy()
        for _ in range(rounds):
            with torch.autocast(x.device.type, dtype=self.amp, enabled=self.amp is not None):
                out = self.net(x)
            labels = postprocess_batch(probability_tensors(out, spec)["mask"], spec)
            guidance = x[:, spec.in_channels :].cpu().numpy()
            for k, value in enumerate(values):
                if value == 0:
                    continue
                pred = labels[k] > 0 if spec.num_classes <= 2 else labels[k] == value
                click = next_click(truth[k] == value, pred, int(value))
                if click is None:
                    continue
                added = encode([click], whole, spec, labels[k])
                foreground = max(1, spec.num_classes - 1)
                guidance[k, : 2 * foreground] = np.maximum(
                    guidance[k, : 2 * foreground], added[: 2 * foreground]
                )
                guidance[k, 2 * foreground :] = added[2 * foreground :]
            x = torch.cat([x[:, : spec.in_channels], torch.from_numpy(guidance).to(x.device)], 1)
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def postprocess_batch(probs: torch.Tensor, spec: ModelSpec) -> np.ndarray:
    """(N, C, H, W) probabilities -> (N, H, W) label maps as thresholds or argmax give them."""
    return label_maps(probs.float(), spec.mask_threshold).cpu().numpy()


def _mean_over_ranks(value: float, device: torch.device, dist: Dist) -> float:
    if dist.world == 1:
        return value
    t = torch.tensor([value], device=device)
    torch.distributed.all_reduce(t)
    return float(t) / dist.world


def _from_main(value: float, device: torch.device, dist: Dist) -> float:
    """The leader validates; every rank must agree on the score so they stop together."""
    if dist.world == 1:
        return float(value)
    t = torch.tensor([float(value)], device=device)
    torch.distributed.broadcast(t, dist.leader)
    return float(t)
