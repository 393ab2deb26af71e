"""`medviewer pacs`: the saved PACS nodes, echo and study search over DICOMweb."""

from __future__ import annotations

import argparse
import json

from medviewer.pacs.errors import PacsError
from medviewer.pacs.nodes import AUTH_KINDS, DEFAULT_TIMEOUT_S, NodeBook, PacsNode


def add_commands(sub: argparse._SubParsersAction) -> None:
    pacs = sub.add_parser("pacs", help="PACS nodes; echo and find studies over DICOMweb")
    cmds = pacs.add_subparsers(dest="pacs_command", required=True)

    p = cmds.add_parser("nodes", help="list the saved PACS nodes")
    p.add_argument("--json", action="store_true", help="one JSON list")
    p.set_defaults(func=cmd_nodes)

    p = cmds.add_parser(
        "add-node",
        help="save a PACS node (secrets stay in the environment: --secret-env names the variable)",
    )
    p.add_argument("name")
    _connection_options(p, required=True)
    p.add_argument("--replace", action="store_true", help="overwrite a node of that name")
    p.set_defaults(func=cmd_add_node)

    p = cmds.add_parser("remove-node", help="forget a saved PACS node")
    p.add_argument("name")
    p.set_defaults(func=cmd_remove_node)

    p = cmds.add_parser("echo", help="test the connection to a node (a trivial QIDO query)")
    _node_argument(p)
    p.set_defaults(func=cmd_echo)

    p = cmds.add_parser("find", help="search a node's studies (QIDO-RS)")
    _node_argument(p)
    p.add_argument("--patient-id")
    p.add_argument("--patient-name", help="Family^Given, or with the wildcards * and ? (e.g. Doe*)")
    p.add_argument("--modality", help="a modality in the study, e.g. CT")
    p.add_argument("--date", help="study date range YYYYMMDD-YYYYMMDD (either end may be open)")
    p.add_argument("--accession")
    p.add_argument("--study", dest="study_uid", metavar="UID", help="Study Instance UID")
    p.add_argument("--limit", type=int, help="at most this many studies")
    p.add_argument("--json", action="store_true", help="one JSON list")
    p.set_defaults(func=cmd_find)


def _connection_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--url", required=required, help="DICOMweb root, e.g. http://host/dicom-web")
    p.add_argument("--auth", choices=AUTH_KINDS, help="default: none (basic with --user)")
    p.add_argument("--user", help="basic auth user")
    p.add_argument(
        "--secret-env", metavar="VAR", help="environment variable holding the password or token"
    )
    p.add_argument("--no-verify-tls", action="store_true", help="accept any TLS certificate")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S")


def _node_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("node", nargs="?", help="a saved node's name (or give --url)")
    _connection_options(p, required=False)


def _node_from(args: argparse.Namespace, name: str) -> PacsNode:
    auth = args.auth or ("basic" if args.user else "none")
    return PacsNode(
        name=name,
        url=args.url,
        auth=auth,
        user=args.user,
        secret_env=args.secret_env,
        verify_tls=not args.no_verify_tls,
        timeout=args.timeout,
    )


def _resolve(args: argparse.Namespace) -> PacsNode:
    if args.url:
        return _node_from(args, args.node or args.url)
    if not args.node:
        raise PacsError("name a saved PACS node or give --url")
    return NodeBook().get(args.node)


def cmd_nodes(args: argparse.Namespace) -> int:
    nodes = NodeBook().nodes()
    if args.json:
        print(json.dumps([n.to_json() for n in nodes], indent=1))
        return 0
    if not nodes:
        print("no PACS nodes (add one: medviewer pacs add-node NAME --url URL)")
    for n in nodes:
        auth = n.auth if n.auth == "none" else f"{n.auth} ({n.user or ''} ${n.secret_env})"
        tls = "" if n.verify_tls else ", TLS not verified"
        print(f"{n.name}  {n.url or n.dimse}  auth {auth}, timeout {n.timeout:g} s{tls}")
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
    from medviewer.pacs.dicomweb import DicomWebNode  # requests only when talking to a node

    node = _resolve(args)
    seconds = DicomWebNode(node).echo()
    print(f"{node.name}: ok ({seconds * 1000:.0f} ms)")
    return 0


def cmd_find(args: argparse.Namespace) -> int:
    from medviewer.pacs.dicomweb import DicomWebNode
    from medviewer.pacs.query import StudyQuery, date_range

    node = _resolve(args)
    query = StudyQuery(
        patient_id=args.patient_id,
        patient_name=args.patient_name,
        dates=date_range(args.date) if args.date else None,
        modality=args.modality,
        accession=args.accession,
        study_uid=args.study_uid,
    )
    studies = DicomWebNode(node).find_studies(query, limit=args.limit)
    if args.json:
        print(json.dumps([s.to_json() for s in studies], indent=1))
        return 0
    for s in studies:
        modalities = "/".join(s.modalities) or "-"
        print(
            f"{s.patient_id}  {s.patient_name or '-'}  {s.study_date or '-'}  {modalities}  "
            f"{s.description or '-'}  {s.study_uid}"
        )
    print(f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'} on {node.name}")
    return 0
