"""Roles on a PostgreSQL workspace, enforced by the server, not by this program: each clinician
logs in as their own role, a member of `medviewer_annotator` or `medviewer_reviewer`.

Annotators read everything and add mask and label revisions (their imports, leases, jobs);
only reviewers approve or reject (a status revision, or the image's status column: row-level
security on `revisions`, a trigger on `images`) and register or activate model versions (table
grants on `models`). A revision's author is the login (`current_user`, set by a trigger: the
typed name does not count); only the workspace's administrator (its owner, or a superuser) may
record a name on another's behalf (imports, scripts). A refusal reaches the user as
PermissionDenied naming the login and what it may not do (`Workspace.transaction`).

The training queue (`workspace.job_queue`, procrastinate's tables): everyone reads it (a job's
state and events); only reviewers queue and cancel jobs, since a queued job registers a version,
and may activate it, with the worker's rights; a worker (`medviewer worker` on the GPU machine,
its own login of `medviewer_worker`) takes jobs, beats, writes their events and state, and
registers and activates versions, but adds no revision and decides no image.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from medviewer.workspace.errors import PermissionDenied, WorkspaceError

if TYPE_CHECKING:
    from medviewer.workspace.store import Connection, Workspace

ROLES = {
    "annotator": "medviewer_annotator",
    "reviewer": "medviewer_reviewer",
    "worker": "medviewer_worker",
}
_LOGIN = re.compile(r"^[A-Za-z_][A-Za-z0-9_.@-]{0,62}$")

# Run by the administrator when the workspace is created (and again by `grant`: idempotent).
_INSTALL = """
DO $$ BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'medviewer_annotator') THEN
        CREATE ROLE medviewer_annotator NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'medviewer_reviewer') THEN
        CREATE ROLE medviewer_reviewer NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'medviewer_worker') THEN
        CREATE ROLE medviewer_worker NOLOGIN;
    END IF;
END $$;
-- Only what follows: an older queue install granted writes on every table.
REVOKE INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public
    FROM medviewer_annotator, medviewer_reviewer, medviewer_worker;
GRANT SELECT ON ALL TABLES IN SCHEMA public
    TO medviewer_annotator, medviewer_reviewer, medviewer_worker;
GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public
    TO medviewer_annotator, medviewer_reviewer, medviewer_worker;
GRANT INSERT, UPDATE ON patients, studies, series, images, import_reports, jobs
    TO medviewer_annotator, medviewer_reviewer;
GRANT INSERT ON revisions, blob_data TO medviewer_annotator, medviewer_reviewer;
GRANT INSERT ON blob_data TO medviewer_worker;  -- the files of the versions it registers
GRANT INSERT, UPDATE, DELETE ON leases TO medviewer_annotator, medviewer_reviewer;
GRANT INSERT, UPDATE ON models TO medviewer_reviewer, medviewer_worker;
GRANT UPDATE ON jobs TO medviewer_worker;

-- The training queue, once installed (job_queue.install runs this again after it): procrastinate's
-- defer, cancel and worker functions run with the caller's rights.
DO $$ BEGIN
    IF to_regclass('procrastinate_jobs') IS NOT NULL THEN
        GRANT INSERT, UPDATE ON procrastinate_jobs TO medviewer_reviewer, medviewer_worker;
        GRANT INSERT ON procrastinate_events TO medviewer_reviewer, medviewer_worker;
        GRANT DELETE ON procrastinate_jobs TO medviewer_worker;
        GRANT INSERT, UPDATE, DELETE ON procrastinate_workers, procrastinate_periodic_defers
            TO medviewer_worker;
        GRANT INSERT ON job_events TO medviewer_worker;
    END IF;
END $$;

-- The administrator: the owner of the schema table, or a superuser.
CREATE OR REPLACE FUNCTION medviewer_is_admin() RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false)
        OR current_user = (SELECT tableowner FROM pg_tables
                           WHERE tablename = 'medviewer_schema' AND schemaname = current_schema())
$$;
CREATE OR REPLACE FUNCTION medviewer_is_reviewer() RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT medviewer_is_admin() OR pg_has_role(current_user, 'medviewer_reviewer', 'MEMBER')
$$;

CREATE OR REPLACE FUNCTION medviewer_revision_author() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT medviewer_is_admin() THEN
        NEW.author := current_user;
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS revisions_author ON revisions;
CREATE TRIGGER revisions_author BEFORE INSERT ON revisions
    FOR EACH ROW EXECUTE FUNCTION medviewer_revision_author();

ALTER TABLE revisions ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS revisions_read ON revisions;
CREATE POLICY revisions_read ON revisions FOR SELECT USING (true);
DROP POLICY IF EXISTS revisions_add ON revisions;
CREATE POLICY revisions_add ON revisions FOR INSERT WITH CHECK (
    medviewer_is_reviewer()
    OR kind <> 'status'
    OR coalesce(payload::jsonb ->> 'status', '') NOT IN ('approved', 'rejected')
);

CREATE OR REPLACE FUNCTION medviewer_image_decision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.status IS DISTINCT FROM OLD.status AND NEW.status IN ('approved', 'rejected')
            AND NOT medviewer_is_reviewer() THEN
        RAISE EXCEPTION 'only a reviewer may set an image % (image %)', NEW.status, NEW.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $$;
DROP TRIGGER IF EXISTS images_decision ON images;
CREATE TRIGGER images_decision BEFORE UPDATE ON images
    FOR EACH ROW EXECUTE FUNCTION medviewer_image_decision();
"""


def install(ws: Workspace) -> None:
    """Create the group roles, grants, policies and triggers (the administrator, once)."""
    _require_server(ws)
    with ws.transaction("set up the workspace's roles (needs an administrator)") as db:
        apply(db)


def apply(db: Connection) -> None:
    """The roles' grants, policies and triggers, in the caller's transaction: again after
    tables are added (the training queue's, `job_queue.install`)."""
    db.execute(_INSTALL)


def grant(ws: Workspace, user: str, role: str) -> None:
    """Make the login `user` an annotator, a reviewer or a worker of this workspace (and no
    longer the others)."""
    _require_server(ws)
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; valid: {', '.join(ROLES)}")
    if not _LOGIN.match(user):
        raise WorkspaceError(f"{user!r}: not a login name this command accepts")
    others = ", ".join(group for name, group in ROLES.items() if name != role)
    with ws.transaction(f"make {user} a {role}") as db:
        if db.execute("SELECT 1 FROM pg_roles WHERE rolname = ?", (user,)).fetchone() is None:
            raise WorkspaceError(
                f"{ws.where}: no login {user!r} on the server; create it first "
                f'(CREATE ROLE "{user}" LOGIN PASSWORD ...)'
            )
        db.execute(_INSTALL)
        db.execute(f'REVOKE {others} FROM "{user}"')
        db.execute(f'GRANT {ROLES[role]} TO "{user}"')


def role_of(ws: Workspace, user: str) -> str | None:
    """ "reviewer", "annotator", "worker" or None for a login."""
    _require_server(ws)
    for name in ("reviewer", "annotator", "worker"):
        row = ws.db.execute(
            "SELECT pg_has_role(?, ?, 'MEMBER') AND NOT rolsuper FROM pg_roles WHERE rolname = ?",
            (user, ROLES[name], user),
        ).fetchone()
        if row and row[0]:
            return name
    return None


def require(ws: Workspace, role: str, what: str) -> None:
    """PermissionDenied unless this login is the administrator or has `role`: said before
    work the server would refuse midway, where its refusal would not name the role
    (`medviewer worker` needs the worker role). An SQLite workspace has no roles."""
    if ws.dialect != "postgresql":
        return
    row = ws.db.execute(
        "SELECT medviewer_is_admin() OR pg_has_role(current_user, ?, 'MEMBER')", (ROLES[role],)
    ).fetchone()
    if not (row and row[0]):
        raise PermissionDenied(
            f"{ws.where}: {ws.db.user} may not {what}: it needs the {role} role "
            f"(the administrator runs `medviewer workspace grant {ws.db.user} --role {role}`)"
        )


def _require_server(ws: Workspace) -> None:
    if ws.dialect != "postgresql":
        raise WorkspaceError(
            f"{ws.root}: roles need a PostgreSQL workspace (workspace create --database ...); "
            "an SQLite workspace is one clinician's"
        )
