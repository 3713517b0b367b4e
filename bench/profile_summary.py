"""Summarise a py-spy profile in raw (collapsed-stack) form: where a CareLoop process spends its CPU.

    python -m bench.profile_summary .data/bench/profile-stores.raw [--top 15]

`bench.http_ratios --profile stores` records one (py-spy record --format raw, idle samples left out, so
the shares are of the time the process was running Python). Three views:

* suspects: the share of samples whose stack passes through each suspect (they overlap: a request's
  JWT verification runs inside the FastAPI dependency it is part of);
* self: the functions on top of the stack (where the CPU actually is);
* CareLoop code: the app/ functions by inclusive share (what a request's steps cost, children included).
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# name, pattern matched against any frame "function (path:line)" of a stack: the share of samples through it
SUSPECTS: list[tuple[str, str]] = [
    ("transaction set-up and end (session_scope: checkout, BEGIN, SET role/tenant, flush, COMMIT)",
     r"^session_scope \(app/core/db\.py"),
    ("  pool checkout (its own work)", r"_ConnectionFairy\._checkout \("),
    ("  pre-ping (asyncpg dialect: a BEGIN and a ROLLBACK per checkout)", r"_async_ping \("),
    ("  BEGIN of the request's transaction", r"_start_transaction \((?!.*_async_ping)"),
    ("  COMMIT", r"Transaction\.commit \(asyncpg/"),
    ("auth: token check (decode_token, RS256 verify when not cached)", r"^decode_token \(app/core/security\.py"),
    ("  jose / cryptography", r"\((jose|cryptography)/"),
    ("auth: actor (staff, roles, permissions) loaded", r"^(load_staff_actor|_load_actor) \("),
    ("auth: revocation check on the request path", r"^RevokedSessions\.ensure_fresh \("),
    ("revocation poller (background)", r"^RevokedSessions\.poll \("),
    ("SQLAlchemy statement compilation and cache keys", r"\(sqlalchemy/sql/(compiler|cache_key)\.py"),
    ("SQLAlchemy ORM (session, loading, flush)", r"\(sqlalchemy/orm/"),
    ("thread pool (run_in_threadpool / to_thread)", r"^(run_in_threadpool|to_thread|run_sync) \("),
    ("FastAPI dependency solving and request parsing", r"^solve_dependencies \("),
    ("response serialization (serialize_response, jsonable_encoder, render)",
     r"^(serialize_response|jsonable_encoder|JSONResponse\.render) \("),
    ("the endpoint function and the services below it", r"^(list_stores|get_member|list_members|get_availability|"
                                                        r"create_appointment|create_order) \(app/api/v1/"),
]
# Self time by library: each sample goes to the library of the frame on top of the stack.
LIBRARIES: list[tuple[str, str]] = [
    ("asyncpg (protocol, codecs; native time included)", r"\(asyncpg/"),
    ("SQLAlchemy sql (compiler, cache keys, elements)", r"\(sqlalchemy/sql/"),
    ("SQLAlchemy orm", r"\(sqlalchemy/orm/"),
    ("SQLAlchemy engine, pool, dialect, greenlet bridge", r"\(sqlalchemy/|\(greenlet"),
    ("pydantic", r"\(pydantic"),
    ("jose / cryptography", r"\((jose|cryptography)/"),
    ("FastAPI / Starlette", r"\((fastapi|starlette)/"),
    ("uvicorn / httptools", r"\((uvicorn|httptools)/"),
    ("logging", r"\(logging/"),
    ("asyncio / threads / other stdlib", r"\((asyncio|threading|concurrent|re|json|uuid|enum|typing|contextlib|"
                                         r"datetime|zoneinfo|<frozen)"),
    ("CareLoop's own code (app/)", r"\(app/"),
]
FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^():]+)(?::(?P<line>\d+))?\)$")


def load(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            stacks.append((stack.split(";"), int(count)))
    return stacks


def short(frame: str) -> str:
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    file = match["file"]
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in file:
            file = file.split(marker, 1)[1]
    return f"{match['func']} ({file})"


def summarise(path: Path, top: int = 15) -> str:
    stacks = load(path)
    total = sum(n for _, n in stacks)
    if not total:
        return f"{path}: no samples"

    def share(n: int) -> str:
        return f"{100 * n / total:5.1f} %"

    lines = [f"{path}: {total} samples (CPU-active; idle left out)", "",
             "suspects (share of samples whose stack passes through it; they nest and overlap):"]
    for name, pattern in SUSPECTS:
        rx = re.compile(pattern)
        if "(?!.*_async_ping)" in pattern:  # BEGIN outside a pre-ping: judged on the whole stack
            hit = sum(n for frames, n in stacks if not any("_async_ping" in f for f in frames)
                      and any(rx.search(f) for f in frames))
        else:
            hit = sum(n for frames, n in stacks if any(rx.search(f) for f in frames))
        lines.append(f"  {share(hit)}  {name}")
    detached = sum(n for frames, n in stacks if not re.match(r"(_run_module_as_main|Thread\._bootstrap|<module>)",
                                                            frames[0]))
    lines.append(f"  {share(detached)}  (stacks that start inside a SQLAlchemy greenlet: py-spy cannot see their "
                 "async callers, so the shares above that need a caller frame undercount by up to this much)")
    libraries: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    app_inclusive: Counter[str] = Counter()
    for frames, n in stacks:
        top_frame = frames[-1]
        libraries[next((name for name, rx in LIBRARIES if re.search(rx, top_frame)), "other")] += n
        self_time[short(top_frame)] += n
        for frame in {short(f) for f in frames if re.search(r"\(app/(?!cli\.py)", f)}:
            app_inclusive[frame] += n
    lines += ["", "self time by library (the frame on top of the stack; sums to 100 %):"]
    lines += [f"  {share(n)}  {name}" for name, n in libraries.most_common()]
    lines += ["", f"self time by function (top {top}):"]
    lines += [f"  {share(n)}  {frame}" for frame, n in self_time.most_common(top)]
    lines += ["", f"CareLoop code, inclusive (top {top}):"]
    lines += [f"  {share(n)}  {frame}" for frame, n in app_inclusive.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    print(summarise(args.profile, args.top))


if __name__ == "__main__":
    main()
