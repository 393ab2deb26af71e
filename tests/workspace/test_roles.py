"""Roles enforced by the PostgreSQL server, with two real logins: the author is the login, an
annotator adds revisions but cannot approve, reject or activate a model; a reviewer can."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import psycopg
import pytest

from medviewer.cli import main
from medviewer.workspace import PermissionDenied, Workspace, WorkspaceError
from medviewer.workspace.roles import grant, role_of
from tests.workspace.pg_server import PostgresServer

_names = itertools.count()


@pytest.fixture
def team(tmp_path: Path, postgres_server: PostgresServer, series_dir: Path) -> tuple[str, str, str]:
    """A workspace (created by the administrator) and two fresh logins: annotator, reviewer."""
    url = postgres_server.database()
    n = next(_names)
    annotator, reviewer = f"ann{n}", f"rev{n}"
    postgres_server.admin(f"CREATE ROLE {annotator} LOGIN; CREATE ROLE {reviewer} LOGIN")
    with Workspace.create(tmp_path / "team", database=url) as ws:
        ws.import_paths([series_dir])
        ws.models.register("chest", "1")
        grant(ws, annotator, "annotator")
        grant(ws, reviewer, "reviewer")
        assert role_of(ws, annotator) == "annotator" and role_of(ws, reviewer) == "reviewer"
    return url, annotator, reviewer


def _as(url: str, user: str) -> Workspace:
    return Workspace.open(url.replace("postgres@", f"{user}@"))


def test_annotator_adds_revisions_as_itself_but_cannot_decide(team: tuple[str, str, str]) -> None:
    url, annotator, _ = team
    with _as(url, annotator) as ws:
        rev = ws.revisions.save_mask(1, np.ones((32, 24), np.uint8), source="human", author="x")
        assert rev.author == annotator  # the login, not the typed name
        assert ws.revisions.get(rev.id).author == annotator
        assert ws.image(1).last_author == annotator
        ws.revisions.save_labels(1, {"nodule": True}, source="human", author="x")
        ws.revisions.set_status(1, "in_progress", author="x")
        with pytest.raises(PermissionDenied, match=rf"{annotator} may not approve image 1"):
            ws.revisions.set_status(1, "approved", author="x")
        with pytest.raises(PermissionDenied, match=rf"{annotator} may not reject image 2"):
            ws.revisions.set_status(2, "rejected", author="x")
        with pytest.raises(PermissionDenied, match=rf"{annotator} may not activate model chest 1"):
            ws.models.activate("chest", "1")
        with pytest.raises(PermissionDenied, match="register model"):
            ws.models.register("chest", "2")
        # Around the program, straight to the server: refused just the same.
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="only a reviewer"):
            ws.db.raw.execute("UPDATE images SET status = 'approved' WHERE id = 3")
        assert ws.image(1).status == "in_progress" and ws.models.active("chest") is None


def test_reviewer_approves_and_activates_as_itself(team: tuple[str, str, str]) -> None:
    url, annotator, reviewer = team
    with _as(url, annotator) as ws:
        ws.revisions.save_mask(1, np.ones((32, 24), np.uint8), source="human", author="x")
    with _as(url, reviewer) as ws:
        approval = ws.revisions.set_status(1, "approved", author="someone else")
        assert approval.author == reviewer and ws.image(1).status_author == reviewer
        confirmed = ws.revisions.confirmed(1)
        assert confirmed is not None and confirmed.by == annotator
        ws.models.activate("chest", "1")
        assert ws.models.active_versions() == {"chest": "1"}


def test_an_older_schema_waits_for_the_administrator_in_words(
    team: tuple[str, str, str],
) -> None:
    url, _, reviewer = team
    with Workspace.open(url) as ws:  # as an older medviewer left it: one step back
        ws.db.raw.execute("ALTER TABLE models DROP COLUMN files")
        ws.db.raw.execute("UPDATE medviewer_schema SET version = 4")
        ws.db.raw.commit()
    with pytest.raises(PermissionDenied, match=r"schema 4\); the administrator opens it once"):
        _as(url, reviewer)
    with Workspace.open(url) as ws:  # the administrator (the tables' owner) upgrades it
        grant(ws, reviewer, "reviewer")
    with _as(url, reviewer) as ws:
        assert ws.models.list("chest")


def test_grant_command_and_its_refusals(
    team: tuple[str, str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url, annotator, _ = team
    folder = str(tmp_path / "team")
    assert main(["workspace", "grant", annotator, "--role", "reviewer", "--workspace", folder]) == 0
    assert f"{annotator} is now a reviewer" in capsys.readouterr().out
    with _as(url, annotator) as ws:
        ws.revisions.set_status(1, "approved", author="x")  # now allowed
    assert (
        main(["workspace", "grant", "nobody_here", "--role", "annotator", "--workspace", folder])
        == 2
    )
    assert "no login 'nobody_here'" in capsys.readouterr().err
    sqlite = tmp_path / "solo"
    Workspace.open(sqlite).close()
    assert (
        main(["workspace", "grant", annotator, "--role", "annotator", "--workspace", str(sqlite)])
        == 2
    )
    assert "roles need a PostgreSQL workspace" in capsys.readouterr().err
    with _as(url, annotator) as ws, pytest.raises(WorkspaceError):
        grant(ws, annotator, "annotator")  # a clinician cannot grant roles
