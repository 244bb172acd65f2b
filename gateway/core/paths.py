"""Artifact path canonicalisation and the `workspaces/<name>/` prefix that MLflow puts in artifact paths."""

from __future__ import annotations

import posixpath
import re
from urllib.parse import quote, unquote, urlparse, urlunparse

from gateway.core.errors import InvalidParameter

_FORBIDDEN_CHARS = re.compile(r"[\\;\x00-\x1f\x7f]")

# The file system an artifact store writes to (MLflow's local store, `--artifacts-destination` on a disk): a name
# (one segment of a path) of at most NAME_MAX bytes, a whole path of fewer than PATH_MAX (4,096, its NUL included).
# MLflow 3.17.2 checks neither: its local store fails with `OSError: [Errno 36] File name too long`, which its
# artifact routes answer as 500.
NAME_MAX_BYTES = 255
PATH_MAX_BYTES = 4096
# The gateway does not know the store's artifact root (its `--artifacts-destination`); it leaves it this many bytes of
# PATH_MAX, so a path under the root (with what the store puts before it) is at most 3,584 bytes.
STORE_ROOT_BYTES = 512
MAX_ARTIFACT_PATH_BYTES = PATH_MAX_BYTES - STORE_ROOT_BYTES
# A path inside a run's, logged model's, model version's or trace's artifacts lies in the object's folder, which the
# store puts before it (`<experiment id>/<run id>/artifacts/`, `<experiment id>/models/m-<id>/artifacts/`,
# `<experiment id>/traces/tr-<id>/artifacts/`: at most 73 bytes with a 19-digit experiment id): counted as this many.
OBJECT_FOLDER_BYTES = 128
_WORKSPACE_PREFIX = re.compile(r"^workspaces/([^/]+)(?:/|$)", re.IGNORECASE)


def canonical_artifact_path(raw: str, *, allow_empty: bool = False) -> str:
    """Return a safe, relative artifact path or raise INVALID_PARAMETER_VALUE.

    The path arrives already percent-decoded once by the HTTP server. Anything that would decode
    again into a traversal (`%2e%2e`, `%252e`, `%2f`), a backslash, a `;` parameter, an absolute path,
    a drive letter, a `.`/`..` segment, or a path the store reads as another one (`_as_the_store_reads`:
    `workspaces?`, `?`, `file:`) is refused, so the store acts on exactly the path we checked.
    """
    path = raw
    if path.startswith("/"):
        raise InvalidParameter(f"Invalid artifact path: '{raw}'. Absolute paths are not allowed.")
    if not path:
        if allow_empty:
            return ""
        raise InvalidParameter("Invalid artifact path: the path is empty.")
    if _FORBIDDEN_CHARS.search(path):
        raise InvalidParameter(f"Invalid artifact path: {path!r} contains a forbidden character.")
    if "%" in path and unquote(path) != path:
        raise InvalidParameter(f"Invalid artifact path: {path!r} contains percent-encoded characters.")
    if re.match(r"^[A-Za-z]:", path) or "://" in path:
        raise InvalidParameter(f"Invalid artifact path: {path!r} is not a relative path.")
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidParameter(f"Invalid artifact path: {path!r}. Empty, '.' and '..' segments are not allowed.")
    read = _as_the_store_reads(path)
    if read is None:
        raise InvalidParameter(f"Invalid artifact path: {path!r} is not a path the store can read.")
    if read != path:
        raise InvalidParameter(f"Invalid artifact path: {path!r}. The store would read it as {read!r}.")
    return path


def _as_the_store_reads(path: str) -> str | None:
    """The path MLflow 3.17.2 acts on when given `path` (`validate_path_is_safe`, every artifact route).

    It reads a path as a URL (`urlunparse(urlparse(path))`), which drops an empty query or fragment at its end
    (`workspaces?` is `workspaces`, `?` and `#` are the empty path) and lower-cases a scheme; and it reads a
    `file:` URI as the local path it names (`file:` is the empty path, others the absolute `/...` it refuses).
    Percent escapes, which it decodes too, are refused before this is asked.
    """
    try:
        parsed = urlparse(path)
        read = urlunparse(parsed)
    except ValueError:  # MLflow's own parse fails too
        return None
    if parsed.scheme == "file":
        return urlparse(read).path
    return read


def refuse_long_artifact_path(path: str, *, before: int = 0) -> None:
    """An artifact path the store's file system cannot hold is refused (400) before the store is asked: a name longer
    than NAME_MAX_BYTES, or a path longer than MAX_ARTIFACT_PATH_BYTES once `before` bytes (the folders the store
    puts before it) are counted. Bytes of UTF-8, as the store writes the (percent-decoded) path."""
    for segment in path.split("/"):
        size = _utf8_bytes(segment)
        if size > NAME_MAX_BYTES:
            raise InvalidParameter(
                f"Invalid artifact path: '{_shown(path)}'. Its name '{_shown(segment)}' is {size:,} bytes long in "
                f"UTF-8; the artifact store's file system holds names of at most {NAME_MAX_BYTES} bytes."
            )
    size = _utf8_bytes(path)
    if before + size > MAX_ARTIFACT_PATH_BYTES:
        raise InvalidParameter(
            f"Invalid artifact path: '{_shown(path)}' is {size:,} bytes long in UTF-8, and a path there holds at most "
            f"{MAX_ARTIFACT_PATH_BYTES - before:,}: the artifact store's file system holds paths of at most "
            f"{PATH_MAX_BYTES:,} bytes, its own folders included."
        )


def _utf8_bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _shown(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def artifact_workspace(path: str) -> str | None:
    """The workspace named by a `workspaces/<name>/...` artifact path, if any."""
    match = _WORKSPACE_PREFIX.match(path)
    return match.group(1) if match else None


def refuse_bare_workspaces(path: str) -> None:
    """A proxied artifact path whose first segment is `workspaces` must go on to name a workspace.

    MLflow keeps the `default` workspace's artifacts at the root of its artifact store, above every other
    workspace's `workspaces/<name>/`, and serves a bare `workspaces` in the `default` workspace as that folder
    (other workspaces refuse it): a manager of a workspace linked to a store's `default` listed every other
    workspace of the store and deleted all their artifacts with one `DELETE .../artifacts/workspaces`. Refused
    in any case, as the gateway reads the prefix (a case-insensitive artifact store would read it so too).
    """
    if path.split("/", 1)[0].lower() == "workspaces" and "/" not in path:
        raise InvalidParameter("Artifact paths prefixed with 'workspaces/' must include a workspace name.")


def refuse_dotted_folder(path: str) -> None:
    """An upload into a folder whose path starts with `..` (`..x/f`, `... /f`) is refused in MLflow's words.

    Such names are no traversal (`..x` is a name like any other), but MLflow 3.17.2's local artifact store refuses
    to make the folder (`verify_artifact_path`: a folder "must not resolve to other names") with an `MlflowException`
    that carries no error code, which its artifact routes answer as 500 `INTERNAL_ERROR`: an upload with a bad path
    was answered as the store's failure. Asked of the path as the store's `default` workspace or a store without
    workspaces acts on it, unprefixed; in its other workspaces the store puts `workspaces/<name>/` first.
    """
    folder = posixpath.dirname(path)
    if folder.startswith(".."):
        raise InvalidParameter(
            f"Invalid artifact path: '{folder}'. Names may be treated as files in certain cases, and must not "
            f"resolve to other names when treated as such. This name would resolve to {posixpath.normpath(folder)!r}"
        )


def rewrite_artifact_workspace(path: str, gateway_name: str, upstream_name: str | None) -> str:
    """Check the path's workspace prefix against the caller's workspace and map it to the store's name.

    MLflow refuses a `workspaces/<w>/` prefix that differs from the request's workspace; the gateway
    does the same, then renames the prefix when the store knows the workspace under another name.
    """
    named = artifact_workspace(path)
    if named is None:
        return path
    if named != gateway_name:
        raise InvalidParameter(
            f"Artifact path workspace '{named}' does not match the active workspace '{gateway_name}'."
        )
    if upstream_name is None or upstream_name == gateway_name:
        return path
    return f"workspaces/{upstream_name}{path[len('workspaces/') + len(named) :]}"


def quote_path(path: str) -> str:
    return quote(path, safe="/")


_RUN_ID = re.compile(r"^[0-9a-f]{32}\Z")


def artifact_run_id(artifact_path: str) -> str | None:
    """`[workspaces/<ws>/]<experiment_id>/<run_id>/artifacts/...` names a run."""
    parts = artifact_path.split("/")
    if parts and parts[0].lower() == "workspaces":
        parts = parts[2:]
    if len(parts) >= 2 and _RUN_ID.match(parts[1]):
        return parts[1]
    return None


def artifact_model_id(artifact_path: str) -> str | None:
    """`[workspaces/<ws>/]<experiment_id>/models/<model_id>/artifacts/...` names a logged model."""
    parts = artifact_path.split("/")
    if parts and parts[0].lower() == "workspaces":
        parts = parts[2:]
    if len(parts) >= 4 and parts[1] == "models" and parts[2].startswith("m-"):
        return parts[2]
    return None
