"""PACS nodes in the user's settings, and the commands that keep them (no server needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medviewer.cli import main
from medviewer.config import pacs_nodes_file
from medviewer.pacs.errors import PacsError
from medviewer.pacs.nodes import NodeBook, PacsNode
from medviewer.pacs.query import date_range


def test_nodes_round_trip_without_secrets(_own_settings: Path) -> None:
    assert pacs_nodes_file() == _own_settings
    book = NodeBook()
    node = PacsNode(
        "main",
        url="https://pacs.example/dicom-web",
        auth="basic",
        user="u",
        secret_env="PACS_PW",
        timeout=5,
    )
    book.add(node)
    assert book.nodes() == [node] and book.get("main").verify_tls
    stored = json.loads(_own_settings.read_text())
    assert stored["nodes"][0]["secret_env"] == "PACS_PW" and "password" not in stored["nodes"][0]
    with pytest.raises(PacsError, match="exists"):
        book.add(node)
    book.remove("main")
    assert book.nodes() == []
    with pytest.raises(PacsError, match="no PACS node named 'main'"):
        book.get("main")


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"url": "pacs.example"}, "must start with http"),
        ({}, "needs a DICOMweb URL"),
        ({"url": "http://x", "auth": "basic", "secret_env": "V"}, "basic auth needs a user"),
        ({"url": "http://x", "auth": "bearer"}, "bearer auth needs the environment variable"),
        ({"url": "http://x", "auth": "kerberos"}, "not one of none, basic, bearer"),
        ({"url": "http://x", "timeout": 0}, "timeout must be more than 0"),
    ],
)
def test_a_bad_node_is_refused_by_name(kwargs: dict, reason: str) -> None:
    with pytest.raises(PacsError, match=f"PACS node n: .*{reason}"):
        PacsNode("n", **kwargs)


def test_a_missing_secret_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_SUCH_PACS_TOKEN", raising=False)
    node = PacsNode("n", url="http://x", auth="bearer", secret_env="NO_SUCH_PACS_TOKEN")
    with pytest.raises(PacsError, match="NO_SUCH_PACS_TOKEN .* is not set"):
        node.secret()


def test_unreadable_settings_are_one_error(_own_settings: Path) -> None:
    _own_settings.write_text("{not json")
    with pytest.raises(PacsError, match="cannot be read"):
        NodeBook().nodes()


def test_date_ranges() -> None:
    assert date_range("20240101-20241231") == "20240101-20241231"
    assert date_range("20240101-") == "20240101-"
    assert date_range("-20240101") == "-20240101"
    assert date_range("20240101") == "20240101"
    for bad in ("2024-01-01", "-", "20241231-20240101", "yesterday"):
        with pytest.raises(PacsError, match="study date range"):
            date_range(bad)


def test_node_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pacs", "nodes"]) == 0
    assert "no PACS nodes" in capsys.readouterr().out
    argv = [
        "pacs",
        "add-node",
        "lab",
        "--url",
        "http://127.0.0.1:1/dicom-web",
        "--user",
        "u",
        "--secret-env",
        "LAB_PW",
        "--no-verify-tls",
        "--timeout",
        "3",
    ]
    assert main(argv) == 0
    assert main(argv) == 2
    assert "a PACS node named 'lab' exists" in capsys.readouterr().err
    assert main(["pacs", "nodes", "--json"]) == 0
    (node,) = json.loads(capsys.readouterr().out)
    assert node["auth"] == "basic" and node["verify_tls"] is False and node["timeout"] == 3
    assert main(["pacs", "remove-node", "lab"]) == 0
    assert main(["pacs", "remove-node", "lab"]) == 2
    assert capsys.readouterr().err.strip().startswith("error: no PACS node named 'lab'")
