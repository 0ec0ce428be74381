"""``streammat jobs submit|list|show|cancel --server URL`` — file jobs on a running service.

Only the standard library: the client works wherever Python does, without the service's
dependencies. Every failure (no server, refused, bad request) is one line and exit code 1.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ..errors import ConfigError, StreammatError

DEFAULT_SERVER = "http://127.0.0.1:9100"
TOKEN_ENV = "STREAMMAT_TOKEN"
_TIMEOUT = 30.0
#: files ``submit`` takes from a folder
VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mxf", ".ts")


class ServerError(StreammatError):
    """The service could not be reached or refused the request."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "jobs",
        help="submit, list, show and cancel file jobs on a running service",
        description="File jobs on a streammat service (see `streammat serve`).",
    )
    p.add_argument("--server", default=DEFAULT_SERVER, help=f"service URL (default {DEFAULT_SERVER})")
    p.add_argument("--token", help=f"API token (default: ${TOKEN_ENV})")
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    s = verbs.add_parser("submit", help="queue a file (or every video in a folder)")
    s.add_argument("input", help="video file, or a folder of clips, on the service's host")
    s.add_argument("-o", "--output", required=True, help="output file (a folder when INPUT is a folder)")
    s.add_argument("--format", default="mov", help="output suffix for a folder of clips (default mov)")
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="a process setting (repeatable)")
    verbs.add_parser("list", help="the newest jobs")
    show = verbs.add_parser("show", help="one job in full")
    show.add_argument("id", type=int)
    cancel = verbs.add_parser("cancel", help="cancel a job (a running one keeps a partial output)")
    cancel.add_argument("id", type=int)
    p.set_defaults(func=run)


def _value(text: str) -> Any:
    """``8`` → 8, ``true`` → True, ``0.5`` → 0.5, anything else stays text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def options(pairs: list[str]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--option: expected KEY=VALUE, got {pair!r}")
        result[key.strip().replace("-", "_")] = _value(value)
    return result


def request(server: str, method: str, path: str, token: str | None, body: Any = None) -> Any:
    """One API call; the JSON answer, or ``ServerError`` with the service's one-line error."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    req = urllib.request.Request(server.rstrip("/") + path, data=data, method=method)
    req.add_header("Accept", "application/json")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=_TIMEOUT) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error") or exc.reason
        except (ValueError, AttributeError):
            message = exc.reason
        raise ServerError(f"{server}: {message} (HTTP {exc.code})") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ServerError(f"cannot reach {server}: {reason}") from None
    except ValueError:
        raise ServerError(f"{server}: the answer is not JSON; is this a streammat service?") from None


def _ago(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    return time.strftime("%H:%M:%S", time.localtime(stamp))


def _progress(job: dict[str, Any]) -> str:
    if job.get("progress") is None:
        return f"{job['frames_done']} frames"
    return f"{job['progress'] * 100:5.1f} % ({job['frames_done']}/{job['frames_total']})"


def _table(jobs: list[dict[str, Any]]) -> str:
    rows = [("ID", "STATE", "PROGRESS", "FPS", "OUTPUT")]
    for j in jobs:
        fps = f"{j['fps']:.1f}" if j.get("fps") else "-"
        rows.append((str(j["id"]), j["state"], _progress(j), fps, j.get("output_path") or j["output"]))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4] for r in rows)


def _describe(job: dict[str, Any]) -> str:
    lines = [
        f"job {job['id']}: {job['state']}",
        f"  input     {job['input']}",
        f"  output    {job['output']}",
        f"  progress  {_progress(job)}" + (f", {job['fps']:.1f} fps" if job.get("fps") else ""),
    ]
    if job.get("eta") is not None:
        lines.append(f"  eta       {job['eta']:.0f} s")
    if job.get("output_path"):
        lines.append(f"  result    {job['output_path']}" + (" (partial)" if job.get("partial") else ""))
    if job.get("error"):
        lines.append(f"  error     {job['error']}")
    if job.get("options"):
        lines.append(f"  options   {json.dumps(job['options'], sort_keys=True)}")
    lines.append(
        f"  times     queued {_ago(job['created'])}, started {_ago(job['started'])}, ended {_ago(job['ended'])}"
    )
    return "\n".join(lines)


def _submissions(args: argparse.Namespace) -> list[tuple[str, str]]:
    """(input, output) pairs: one, or one per video in a local folder."""
    folder = Path(args.input)
    if not folder.is_dir():
        return [(args.input, args.output)]
    clips = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())
    if not clips:
        raise ConfigError(f"{folder}: no video files ({', '.join(VIDEO_SUFFIXES)}) in this folder")
    suffix = "." + args.format.lstrip(".")
    return [(str(c.resolve()), os.path.join(args.output, c.stem + suffix)) for c in clips]


def run(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get(TOKEN_ENV)
    server = args.server
    if args.verb == "submit":
        opts = options(args.option)
        for source, target in _submissions(args):
            answer = request(server, "POST", "/jobs", token, {"input": source, "output": target, "options": opts})
            print(f"job {answer['id']} queued: {source} -> {target}")
    elif args.verb == "list":
        print(_table(request(server, "GET", "/jobs", token)["jobs"]))
    elif args.verb == "show":
        print(_describe(request(server, "GET", f"/jobs/{args.id}", token)))
    else:
        job = request(server, "DELETE", f"/jobs/{args.id}", token)
        detail = f": {job['error']}" if job.get("error") else ""
        print(f"job {job['id']} {job['state']}{detail}")
    return 0
