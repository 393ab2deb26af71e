"""`medviewer pacs`: the saved PACS nodes; echo, find, get (retrieve into a workspace) and send
(approved results as DICOM SEG), over DICOMweb or DIMSE (`pacs.remote.connect`)."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from medviewer.cli.workspace import _open
from medviewer.pacs.errors import PacsError
from medviewer.pacs.nodes import (
    AUTH_KINDS,
    DEFAULT_CALLING_AE,
    DEFAULT_TIMEOUT_S,
    RETRIEVE_WITH,
    NodeBook,
    PacsNode,
)
from medviewer.pacs.progress import Progress
from medviewer.workspace.location import workspace_target

if TYPE_CHECKING:
    from medviewer.pacs.remote import PacsConnection


def add_commands(sub: argparse._SubParsersAction) -> None:
    pacs = sub.add_parser(
        "pacs", help="PACS nodes; echo, find, get and send over DICOMweb or DIMSE"
    )
    cmds = pacs.add_subparsers(dest="pacs_command", required=True)

    p = cmds.add_parser("nodes", help="list the saved PACS nodes")
    p.add_argument("--json", action="store_true", help="one JSON list")
    p.set_defaults(func=cmd_nodes)

    p = cmds.add_parser(
        "add-node",
        help="save a PACS node (secrets stay in the environment: --secret-env names the variable)",
    )
    p.add_argument("name")
    _connection_options(p)
    p.add_argument("--replace", action="store_true", help="overwrite a node of that name")
    p.set_defaults(func=cmd_add_node)

    p = cmds.add_parser("remove-node", help="forget a saved PACS node")
    p.add_argument("name")
    p.set_defaults(func=cmd_remove_node)

    p = cmds.add_parser("echo", help="test the connection to a node (C-ECHO or a trivial QIDO)")
    _node_argument(p)
    p.set_defaults(func=cmd_echo)

    p = cmds.add_parser("find", help="search a node's studies, or a study's series (--series)")
    _node_argument(p)
    p.add_argument("--patient-id")
    p.add_argument("--patient-name", help="Family^Given, or with the wildcards * and ? (e.g. Doe*)")
    p.add_argument("--modality", help="a modality in the study, e.g. CT")
    p.add_argument("--date", help="study date range YYYYMMDD-YYYYMMDD (either end may be open)")
    p.add_argument("--accession")
    p.add_argument("--study", dest="study_uid", metavar="UID", help="Study Instance UID")
    p.add_argument(
        "--series", action="store_true", help="list the series of the study given by --study"
    )
    p.add_argument("--limit", type=int, help="at most this many studies")
    p.add_argument("--json", action="store_true", help="one JSON list")
    p.set_defaults(func=cmd_find)

    workspace = argparse.ArgumentParser(add_help=False)
    workspace.add_argument(
        "--workspace",
        type=workspace_target,
        help="workspace folder (default: $MEDVIEWER_WORKSPACE or user data)",
    )
    p = cmds.add_parser(
        "get",
        parents=[workspace],
        help="retrieve a study (or one series) into the workspace's PACS folder and import it; "
        "Ctrl-C stops after the instance in flight, keeping and importing what arrived",
    )
    _node_argument(p)
    p.add_argument("--study", required=True, metavar="UID", help="Study Instance UID")
    p.add_argument("--series", metavar="UID", help="only this Series Instance UID")
    p.set_defaults(func=cmd_get)

    p = cmds.add_parser(
        "send",
        parents=[workspace],
        help="send images' confirmed masks to a node as DICOM SEG",
    )
    _node_argument(p)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "--image", nargs="+", dest="images", metavar="ID", help="id, SOP Instance UID or path"
    )
    which.add_argument(
        "--approved", action="store_true", help="every approved image with a confirmed mask"
    )
    p.add_argument(
        "--anonymise",
        action="store_true",
        help="de-identify (DICOM PS3.15 basic profile) and send de-identified copies of the "
        "sources the SEGs reference",
    )
    p.add_argument(
        "--mapping",
        type=Path,
        help="re-identification mapping (default: WORKSPACE/deidentification/mapping.json)",
    )
    p.set_defaults(func=cmd_send)


def _connection_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", help="DICOMweb root, e.g. http://host/dicom-web")
    p.add_argument("--dimse", metavar="AET@HOST:PORT", help="a DIMSE node's AE title and address")
    p.add_argument(
        "--calling-ae",
        default=DEFAULT_CALLING_AE,
        metavar="AET",
        help=f"our AE title towards a DIMSE node (default {DEFAULT_CALLING_AE})",
    )
    p.add_argument(
        "--retrieve",
        choices=RETRIEVE_WITH,
        default="get",
        help="DIMSE retrieve by C-GET (default) or C-MOVE to our own Storage SCP",
    )
    p.add_argument(
        "--move-port", type=int, metavar="PORT", help="our Storage SCP's port for C-MOVE"
    )
    p.add_argument("--auth", choices=AUTH_KINDS, help="default: none (basic with --user)")
    p.add_argument("--user", help="basic auth user")
    p.add_argument(
        "--secret-env", metavar="VAR", help="environment variable holding the password or token"
    )
    p.add_argument("--no-verify-tls", action="store_true", help="accept any TLS certificate")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S")


def _node_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("node", nargs="?", help="a saved node's name (or give --url or --dimse)")
    _connection_options(p)


def _node_from(args: argparse.Namespace, name: str) -> PacsNode:
    auth = args.auth or ("basic" if args.user else "none")
    return PacsNode(
        name=name,
        url=args.url,
        dimse=args.dimse,
        auth=auth,
        user=args.user,
        secret_env=args.secret_env,
        verify_tls=not args.no_verify_tls,
        timeout=args.timeout,
        calling_ae=args.calling_ae,
        retrieve_with=args.retrieve,
        move_port=args.move_port,
    )


def _resolve(args: argparse.Namespace) -> PacsNode:
    if args.url or args.dimse:
        return _node_from(args, args.node or args.url or args.dimse)
    if not args.node:
        raise PacsError("name a saved PACS node or give --url or --dimse")
    return NodeBook().get(args.node)


def _connect(args: argparse.Namespace) -> PacsConnection:
    from medviewer.pacs.remote import connect  # requests / pynetdicom only when talking

    return connect(_resolve(args))


def cmd_nodes(args: argparse.Namespace) -> int:
    nodes = NodeBook().nodes()
    if args.json:
        print(json.dumps([n.to_json() for n in nodes], indent=1))
        return 0
    if not nodes:
        print(
            "no PACS nodes (add one: medviewer pacs add-node NAME --url URL|--dimse AE@HOST:PORT)"
        )
    for n in nodes:
        if n.url:
            auth = n.auth if n.auth == "none" else f"{n.auth} ({n.user or ''} ${n.secret_env})"
            tls = "" if n.verify_tls else ", TLS not verified"
            how = f"DICOMweb, auth {auth}"
        else:
            port = f" (our Storage SCP on port {n.move_port})" if n.retrieve_with == "move" else ""
            how = f"DIMSE as {n.calling_ae}, retrieve by C-{n.retrieve_with.upper()}{port}"
            tls = ""
        print(f"{n.name}  {n.url or n.dimse}  {how}, timeout {n.timeout:g} s{tls}")
    return 0


def cmd_add_node(args: argparse.Namespace) -> int:
    book = NodeBook()
    book.add(_node_from(args, args.name), replace=args.replace)
    print(f"saved PACS node {args.name} in {book.path}")
    return 0


def cmd_remove_node(args: argparse.Namespace) -> int:
    NodeBook().remove(args.name)
    print(f"removed PACS node {args.name}")
    return 0


def cmd_echo(args: argparse.Namespace) -> int:
    conn = _connect(args)
    seconds = conn.echo()
    print(f"{conn.node.name}: ok ({seconds * 1000:.0f} ms)")
    return 0


def cmd_find(args: argparse.Namespace) -> int:
    from medviewer.pacs.query import StudyQuery, date_range

    if args.series:
        if not args.study_uid:
            raise PacsError("--series lists the series of one study: give --study UID")
        return _find_series(args)
    query = StudyQuery(
        patient_id=args.patient_id,
        patient_name=args.patient_name,
        dates=date_range(args.date) if args.date else None,
        modality=args.modality,
        accession=args.accession,
        study_uid=args.study_uid,
    )
    conn = _connect(args)
    studies = conn.find_studies(query, limit=args.limit)
    if args.json:
        print(json.dumps([s.to_json() for s in studies], indent=1))
        return 0
    for s in studies:
        modalities = "/".join(s.modalities) or "-"
        print(
            f"{s.patient_id}  {s.patient_name or '-'}  {s.study_date or '-'}  {modalities}  "
            f"{s.description or '-'}  {s.study_uid}"
        )
    print(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} on {conn.node.name}")
    return 0


def _find_series(args: argparse.Namespace) -> int:
    conn = _connect(args)
    series = conn.find_series(args.study_uid)
    if args.json:
        print(json.dumps([s.to_json() for s in series], indent=1))
        return 0
    for s in series:
        count = "?" if s.instances is None else str(s.instances)
        print(
            f"{s.number or '-'}  {s.modality or '-'}  {s.description or '-'}  "
            f"{count} instance(s)  {s.series_uid}"
        )
    print(f"{len(series)} series in study {args.study_uid} on {conn.node.name}")
    return 0


@contextlib.contextmanager
def _ctrl_c_cancels() -> Iterator[threading.Event]:
    """The first Ctrl-C sets the event (the transfer stops after the instance in flight and
    keeps what arrived); a second one interrupts at once."""
    cancel = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield cancel  # signals reach only the main thread
        return

    def on_sigint(signum: int, frame: object) -> None:
        if cancel.is_set():
            raise KeyboardInterrupt
        cancel.set()
        print("\ncancelling after the instance in flight (Ctrl-C again to stop now)",
              file=sys.stderr)  # fmt: skip

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield cancel
    finally:
        signal.signal(signal.SIGINT, previous)


def _progress(what: str) -> Progress:
    """Progress on stderr: one updating line on a terminal, else a line per tenth."""
    shown = [-1]
    tty = sys.stderr.isatty()

    def show(done: int, total: int | None) -> None:
        step = done * 10 // total if total else done // 100
        if tty:
            print(f"\r{what}: {done}/{total or '?'}", end="", file=sys.stderr, flush=True)
            if total and done == total:
                print(file=sys.stderr)
        elif step != shown[0] or done == total:
            print(f"{what}: {done}/{total or '?'}", file=sys.stderr, flush=True)
        shown[0] = step

    return show


def cmd_get(args: argparse.Namespace) -> int:
    from medviewer.pacs.transfer import retrieve_into

    conn = _connect(args)
    with _open(args) as ws, _ctrl_c_cancels() as cancel:
        got = retrieve_into(
            ws,
            conn,
            args.study,
            args.series,
            progress=_progress(f"{conn.node.name}: instances"),
            cancel=cancel,
        )
    transfer = got.transfer
    for line in transfer.failed:
        print(f"  failed: {line}")
    for line in transfer.notes:
        print(f"  note: {line}")
    for r in got.masks:
        if r.error:
            print(f"  mask not imported: {r.error}")
        else:
            print(f"  {r.describe()}")
    ended = "cancelled; " if got.cancelled else ""
    print(
        f"{ended}{len(transfer.files)} instance(s) retrieved into {got.folder}; workspace "
        f"{ws.root}: {got.added} new image(s), {got.already} already indexed"
    )
    if not transfer.files:
        return 2
    return 1 if got.cancelled or transfer.failed else 0


def cmd_send(args: argparse.Namespace) -> int:
    from medviewer.pacs.transfer import approved_images, send_results

    conn = _connect(args)
    with _open(args, readonly=True) as ws:
        if args.approved:
            ids = approved_images(ws)
            if not ids:
                print(f"workspace {ws.root}: no approved image has a confirmed mask to send")
                return 2
        else:
            ids = [ws.find_image(key).id for key in args.images]
        anonymiser = None
        if args.anonymise:
            from medviewer.workspace.export.anonymised import anonymiser_for

            anonymiser = anonymiser_for(ws.root, args.mapping)
        elif args.mapping:
            raise PacsError("--mapping is for --anonymise")
        with _ctrl_c_cancels() as cancel:
            sent = send_results(
                ws,
                conn,
                ids,
                anonymiser=anonymiser,
                progress=_progress(f"{conn.node.name}: files"),
                cancel=cancel,
            )
    for note in sent.notes:
        print(f"  note: {note}")
    for line in sent.transfer.notes:
        print(f"  note: {line}")
    for line in sent.failed + sent.transfer.failed:
        print(f"  not sent: {line}")
    print(
        f"{len(sent.image_ids)} of {len(ids)} image(s) sent to {conn.node.name} "
        f"({len(sent.transfer.files)} file(s))"
    )
    if not sent.image_ids:
        return 2
    return 1 if len(sent.image_ids) < len(ids) or sent.transfer.failed else 0
