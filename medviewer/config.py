"""Settings and paths, without Qt. Environment variables override the defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from medviewer.errors import SettingError
from medviewer.imaging.budget import DecodeBudget
from medviewer.imaging.cache import DEFAULT_CACHE_BYTES
from medviewer.models.model_budget import ModelBudget

APP_NAME = "medviewer"


def default_workspace() -> Path:
    """MEDVIEWER_WORKSPACE, else the user data folder (platformdirs)."""
    env = os.environ.get("MEDVIEWER_WORKSPACE")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir(APP_NAME)) / "workspace"


def pacs_nodes_file() -> Path:
    """MEDVIEWER_PACS_NODES, else pacs_nodes.json in the user config folder (platformdirs)."""
    env = os.environ.get("MEDVIEWER_PACS_NODES")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_config_dir(APP_NAME)) / "pacs_nodes.json"


def debug() -> bool:
    """MEDVIEWER_DEBUG=1: commands show the traceback of an error, not one line."""
    return os.environ.get("MEDVIEWER_DEBUG", "") not in ("", "0")


def cache_bytes() -> int:
    """Pixel cache cap: MEDVIEWER_CACHE_MB, else 1 GiB."""
    env = os.environ.get("MEDVIEWER_CACHE_MB")
    if not env:
        return DEFAULT_CACHE_BYTES
    try:
        mb = int(env)
    except ValueError:
        raise SettingError(
            f"MEDVIEWER_CACHE_MB must be a whole number of megabytes, not {env!r}"
        ) from None
    return max(mb, 0) << 20


@dataclass(frozen=True)
class Settings:
    workspace: Path
    cache_bytes: int
    # MEDVIEWER_MAX_FRAME_PIXELS, MEDVIEWER_MAX_FRAMES, MEDVIEWER_MAX_DECODED_MB; import and the
    # loader read the same variables when not handed a budget (imaging.budget).
    decode_budget: DecodeBudget
    # MEDVIEWER_MAX_INPUT_PIXELS, MEDVIEWER_MAX_DECODER_CHANNELS, MEDVIEWER_MAX_MODEL_MB; specs,
    # build_model and the engine read the same variables when not handed a budget.
    model_budget: ModelBudget

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            workspace=default_workspace(),
            cache_bytes=cache_bytes(),
            decode_budget=DecodeBudget.from_env(),
            model_budget=ModelBudget.from_env(),
        )
