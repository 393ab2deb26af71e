"""`python -m tests.training.ddp_probe [--node-rank R] JOB.json`: the trainer's entry point, with
each rank's weights fingerprinted after training into $MEDVIEWER_PROBE_DIR/rank<RANK>.json, so
a test can see that DDP kept the ranks' models identical."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import medviewer.training.__main__ as entry

_fit = entry.fit


def fingerprint(named: Any) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(named):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def fit(model: Any, *args: Any, **kw: Any) -> Any:
    result = _fit(model, *args, **kw)
    names = {name for name, _ in model.named_parameters()}  # BatchNorm's running statistics
    # are each rank's own between DDP's broadcasts: only the learnt parameters must agree.
    record = {
        "weights": fingerprint(model.named_parameters()),
        "best": fingerprint((k, v) for k, v in result.state.items() if k in names),
        "leads": kw["dist"].main,
        "world": kw["dist"].world,
    }
    folder = Path(os.environ["MEDVIEWER_PROBE_DIR"])
    (folder / f"rank{os.environ.get('RANK', '0')}.json").write_text(json.dumps(record))
    return result


entry.fit = fit

if __name__ == "__main__":
    sys.exit(entry.main())
