"""Commands on files: info, render."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from medviewer.imaging import Catalog, FrameRef, ImageLoader, Window, render, scan, verify


def _catalog_dict(catalog: Catalog) -> dict:
    return {
        "patients": [
            {
                "id": p.id,
                "name": p.name,
                "studies": [
                    {
                        "uid": st.uid,
                        "description": st.description,
                        "date": st.date,
                        "series": [
                            {
                                "uid": se.uid,
                                "description": se.description,
                                "modality": se.modality,
                                "number": se.number,
                                "sorted_by": se.sorted_by,
                                "images": [
                                    {
                                        "path": str(i.path),
                                        "rows": i.rows,
                                        "columns": i.columns,
                                        "frames": i.frames,
                                        "photometric": i.photometric,
                                        "transfer_syntax": i.transfer_syntax_name,
                                        "pixel_spacing": i.pixel_spacing,
                                    }
                                    for i in se.instances
                                ],
                            }
                            for se in st.series
                        ],
                    }
                    for st in p.studies
                ],
            }
            for p in catalog.patients
        ],
        "unreadable": [{"path": str(p.path), "reason": p.reason} for p in catalog.problems],
        "skipped": [{"path": str(p.path), "reason": p.reason} for p in catalog.skipped],
    }


def print_catalog(catalog: Catalog) -> None:
    for p in catalog.patients:
        print(f"Patient {p.name or '(no name)'} [{p.id or 'no id'}]")
        for st in p.studies:
            print(f"  Study {st.description or st.uid} {st.date}".rstrip())
            for se in st.series:
                first = se.instances[0]
                frames = sum(i.frames for i in se.instances)
                print(
                    f"    Series {se.number if se.number is not None else '-'} "
                    f"{se.modality or '?'} {se.description!r}: {len(se.instances)} file(s), "
                    f"{frames} image(s), {first.columns}x{first.rows}, "
                    f"{first.transfer_syntax_name}, sorted by {se.sorted_by}"
                )
    n = len(catalog.instances())
    print(
        f"{n} readable file(s), {len(catalog.problems)} unreadable, {len(catalog.skipped)} skipped"
    )
    for prob in catalog.problems:
        print(f"  unreadable: {prob.path}: {prob.reason}")
    for prob in catalog.skipped:
        print(f"  skipped: {prob.path}: {prob.reason}")


def cmd_info(args: argparse.Namespace) -> int:
    catalog = scan(args.paths)
    if args.verify:
        verify(catalog)
    if args.json:
        print(json.dumps(_catalog_dict(catalog), indent=2))
    else:
        print_catalog(catalog)
    return 0 if catalog.instances() else 2


def cmd_render(args: argparse.Namespace) -> int:
    import cv2  # only this command writes images

    catalog = scan([args.file])
    instances = catalog.instances()
    if not instances:
        found = catalog.problems + catalog.skipped
        reason = found[0].reason if found else "nothing found"
        print(f"error: {args.file}: {reason}", file=sys.stderr)
        return 2
    inst = instances[0]
    frame = args.frame - 1
    window = Window(*args.window) if args.window else None
    image = ImageLoader(cache_bytes=0).image(FrameRef(inst, frame))
    out = render(image, window)
    if out.ndim == 3:
        out = out[..., ::-1]  # OpenCV writes BGR
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(args.out), out):
        print(f"error: {args.out}: could not write the PNG", file=sys.stderr)
        return 2
    print(f"wrote {args.out} ({out.shape[1]}x{out.shape[0]})")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    info = sub.add_parser("info", help="list patients, studies, series and unreadable files")
    info.add_argument("paths", nargs="+", type=Path, help="files, folders or DICOMDIRs")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.add_argument("--verify", action="store_true", help="also decode every image's pixels")
    info.set_defaults(func=cmd_info)

    rend = sub.add_parser("render", help="render one image to PNG as the viewer shows it")
    rend.add_argument("file", type=Path)
    rend.add_argument("--out", type=Path, required=True, help="PNG file to write")
    rend.add_argument("--frame", type=int, default=1, help="frame number, from 1")
    rend.add_argument("--window", type=float, nargs=2, metavar=("CENTER", "WIDTH"))
    rend.set_defaults(func=cmd_render)
