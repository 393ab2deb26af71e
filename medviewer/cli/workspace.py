"""Commands on a workspace: import, import-masks, export, review, status, history."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from medviewer.cli.imaging import print_catalog
from medviewer.config import default_workspace
from medviewer.training.jobs import KIND, as_it_stands, job_folder
from medviewer.workspace import Workspace
from medviewer.workspace.location import BLOB_MODES, workspace_target


def _open(args: argparse.Namespace, *, readonly: bool = False) -> Workspace:
    """Commands that only read open read-only: they work on a read-only folder, write nothing,
    and never create a workspace."""
    return Workspace.open(args.workspace or default_workspace(), readonly=readonly)


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def cmd_import(args: argparse.Namespace) -> int:
    with _open(args) as ws:
        result = ws.import_paths(args.paths)
        print_catalog(result.catalog)
        print(f"workspace {ws.root}: {result.added} new image(s), {result.already} already indexed")
    return 0 if result.catalog.instances() else 2


def cmd_import_masks(args: argparse.Namespace) -> int:
    from medviewer.workspace.mask_import import import_masks

    with _open(args) as ws:
        results = import_masks(
            ws, args.folder, author=args.author, model=args.model, mapping=args.map
        )
    ok = [r for r in results if r.error is None]
    for r in results:
        if r.error:
            print(f"  error: {r.error}")
        else:
            print(f"  {r.describe()}")
    print(f"{len(ok)} mask(s) imported, {len(results) - len(ok)} failed")
    if not ok:
        return 2
    return 0 if len(ok) == len(results) else 1


def cmd_export(args: argparse.Namespace) -> int:
    from medviewer.workspace.export import export_workspace

    with _open(args, readonly=True) as ws:
        anonymiser = None
        if args.anonymise:
            from medviewer.workspace.export.anonymised import anonymiser_for

            anonymiser = anonymiser_for(ws.root, args.mapping)
        report = export_workspace(
            ws, args.out, args.format, which=args.which, anonymiser=anonymiser
        )
    for note in report.notes:
        print(f"  note: {note}")
    for failure in report.failed:
        print(f"  not exported: {failure}")
    summary = f"wrote {len(report.files)} file(s) to {args.out}"
    if not report.failed:
        print(summary)
        return 0
    print(f"{summary}; {len(report.failed)} image(s) could not be exported (listed above)")
    return 1 if report.exported else 2


def cmd_status(args: argparse.Namespace) -> int:
    with _open(args, readonly=True) as ws:
        counts = ws.revisions.counts()
        counts["models"] = [
            {"name": m.name, "version": m.version, "active": m.active, "metrics": m.metrics}
            for m in ws.models.list()
        ]
        jobs = [as_it_stands(ws, j) for j in ws.jobs.list()]
        counts["jobs"] = [
            {"id": j.id, "kind": j.kind, "model": j.model_name, "state": j.state,
             "pid": j.pid, "message": j.message, "folder": str(job_folder(ws, j.id))}
            for j in jobs
        ]  # fmt: skip
    if args.json:
        print(json.dumps(counts, indent=2))
        return 0
    print(f"{counts['images']} image(s)")
    for status, n in sorted(counts["status"].items()):
        print(f"  {status}: {n}")
    for r in counts["revisions"]:
        model = f" {r['model']} {r['version']}" if r["model"] else ""
        counted = f"{r['images']} image(s), {r['revisions']} revision(s)"
        print(f"  {r['kind']} from {r['source']}{model}: {counted}")
    for m in counts["models"]:
        print(f"  model {m['name']} {m['version']}{' (active)' if m['active'] else ''}")
    finished = sum(j["state"] == "finished" for j in counts["jobs"])
    if finished:
        print(f"  jobs finished: {finished}")
    for j in counts["jobs"]:  # the others, each with what to do about it
        what = f"  job {j['id']} {j['kind']} {j['model'] or ''}".rstrip()
        if j["state"] == "running":
            print(f"{what}: running (pid {j['pid']})")
        elif j["state"] != "finished":
            why = f" ({j['message']})" if j["message"] else ""
            resume = f"; resume with `medviewer train --resume {j['folder']}`"
            can_resume = j["kind"] == KIND and j["state"] in ("failed", "cancelled")
            print(f"{what}: {j['state']}{why}{resume if can_resume else ''}")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    with _open(args, readonly=True) as ws:
        image = ws.find_image(args.image)
        revisions = ws.revisions.history(image.id)
    print(f"image {image.id}: {image.path} frame {image.frame + 1} ({image.status})")
    for r in revisions:
        model = f" {r.model_name} {r.model_version}" if r.model_name else ""
        detail = r.status or (r.labels if r.kind == "labels" else r.summary.get("pixels", ""))
        print(f"  #{r.id} {_when(r.created_at)} {r.kind} {r.source} by {r.author}{model}: {detail}")
    return 0


def cmd_review(args: argparse.Namespace) -> int:
    """Approve or reject images from a script (QA): the same status revisions the app writes."""
    status = "approved" if args.approve else "rejected"
    with _open(args) as ws:
        images = [ws.find_image(key) for key in args.images]  # all known before any is changed
        for image in images:
            ws.revisions.set_status(image.id, status, author=args.author)
            confirmed = ws.revisions.confirmed(image.id)
            truth = (
                f"mask revision {confirmed.revision.id} ({confirmed.revision.source}) confirmed"
                if confirmed
                else "no mask confirmed"
            )
            print(f"image {image.id}: {status} by {args.author}; {truth}")
    return 0


def cmd_create(args: argparse.Namespace) -> int:
    with Workspace.create(args.folder, database=args.database, blobs=args.blobs) as ws:
        if ws.database is None:
            print(f"workspace {ws.root}: created (SQLite)")
        else:
            print(
                f"workspace {ws.root}: created on {ws.database} (masks in the "
                f"{'database' if args.blobs == 'database' else 'folder ' + str(ws.root / 'blobs')}"
                "); every --workspace of this folder uses it. Passwords come from PGPASSWORD, "
                "~/.pgpass or a service file, never from the workspace file"
            )
    return 0


def cmd_grant(args: argparse.Namespace) -> int:
    from medviewer.training.queue import install
    from medviewer.workspace.roles import grant

    with _open(args) as ws:
        grant(ws, args.user, args.role)
        install(ws)  # the training queue's tables, with the roles' grants: by the administrator
        print(f"{args.user} is now a {args.role} of {ws.where}")
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--workspace",
        type=workspace_target,
        help="workspace folder (default: $MEDVIEWER_WORKSPACE or user data)",
    )

    imp = sub.add_parser("import", parents=[common], help="index studies into the workspace")
    imp.add_argument("paths", nargs="+", type=Path)
    imp.set_defaults(func=cmd_import)

    masks = sub.add_parser(
        "import-masks",
        parents=[common],
        help="existing PNG label maps, DICOM SEG and NIfTI label volumes become import revisions",
    )
    masks.add_argument(
        "folder", type=Path, help="folder of PNGs, SEGs and/or NIfTIs, or one SEG or NIfTI file"
    )
    masks.add_argument("--author", required=True, help="a SEG's Content Creator's Name wins")
    masks.add_argument(
        "--model", help="registered model whose classes the masks use (SEG segments by label)"
    )
    masks.add_argument("--map", type=Path, help="CSV with columns mask,image (id, SOP UID or path)")
    masks.set_defaults(func=cmd_import_masks)

    exp = sub.add_parser("export", parents=[common], help="write masks and labels out")
    exp.add_argument("--format", required=True, choices=["dicom-seg", "png", "nifti", "csv"])
    exp.add_argument("--out", type=Path, required=True)
    exp.add_argument("--which", choices=["final", "original"], default="final")
    exp.add_argument(
        "--anonymise",
        action="store_true",
        help="de-identify (DICOM PS3.15 basic profile, dates shifted per patient); dicom-seg "
        "also writes de-identified copies of its sources; nifti names files by pseudonym",
    )
    exp.add_argument(
        "--mapping",
        type=Path,
        help="re-identification mapping, reused across exports "
        "(default: WORKSPACE/deidentification/mapping.json; never inside --out)",
    )
    exp.set_defaults(func=cmd_export)

    st = sub.add_parser("status", parents=[common], help="counts of images, revisions, models")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)

    rev = sub.add_parser("review", parents=[common], help="approve or reject images (scripted QA)")
    rev.add_argument("images", nargs="+", metavar="IMAGE", help="id, SOP Instance UID or path")
    verdict = rev.add_mutually_exclusive_group(required=True)
    verdict.add_argument("--approve", action="store_true", help="confirm what the image shows now")
    verdict.add_argument("--reject", action="store_true")
    rev.add_argument("--author", required=True, help="who reviewed (recorded with the status)")
    rev.set_defaults(func=cmd_review)

    team = sub.add_parser("workspace", help="create a workspace (SQLite, or PostgreSQL for a team)")
    team_sub = team.add_subparsers(dest="workspace_command", required=True)
    create = team_sub.add_parser(
        "create", help="a new workspace folder; with --database, on a PostgreSQL server"
    )
    create.add_argument("folder", type=Path)
    create.add_argument(
        "--database",
        metavar="URL",
        help="postgresql://USER@HOST[:PORT]/DATABASE (an empty database); the folder's "
        "workspace.json then names it (without password)",
    )
    create.add_argument(
        "--blobs",
        choices=BLOB_MODES,
        default="database",
        help="where masks are kept on PostgreSQL: in the database (default) or in FOLDER/blobs "
        "(a folder every client mounts at the same path)",
    )
    create.set_defaults(func=cmd_create)
    grant = team_sub.add_parser(
        "grant",
        parents=[common],
        help="make a PostgreSQL login an annotator, a reviewer or a training worker (the server "
        "enforces it)",
    )
    grant.add_argument("user", help="the clinician's PostgreSQL login")
    grant.add_argument("--role", required=True, choices=["annotator", "reviewer", "worker"])
    grant.set_defaults(func=cmd_grant)

    hist = sub.add_parser("history", parents=[common], help="every revision of one image")
    hist.add_argument("image", help="image id, SOP Instance UID or file path")
    hist.set_defaults(func=cmd_history)
