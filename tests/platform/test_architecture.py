"""The shape the code keeps: reactions and jobs where the worker finds them, every event declared and consumed,
no transaction opened by domain code, and docs/events.md as the code makes it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from app.core import events
from app.events_doc import EVENTS_DOC, events_markdown, unconsumed

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = ROOT / "app" / "domain"
REGISTERING = {"on": "handlers", "on_outside_transaction": "handlers", "scheduled": "jobs"}


def _modules(folder: Path):
    for path in sorted(folder.rglob("*.py")):
        yield path, ast.parse(path.read_text(), filename=str(path))


def _decorator_name(node: ast.expr) -> str | None:
    target = node.func if isinstance(node, ast.Call) else node
    if isinstance(target, ast.Attribute):
        return target.attr
    if isinstance(target, ast.Name):
        return target.id
    return None


def _registered_functions():
    """(path, function name, decorator) for every function of app/domain decorated with on/scheduled."""
    for path, tree in _modules(DOMAIN):
        for node in ast.walk(tree):
            if isinstance(node, ast.AsyncFunctionDef | ast.FunctionDef):
                for decorator in node.decorator_list:
                    name = _decorator_name(decorator)
                    if name in REGISTERING:
                        yield path, node.name, name


def test_reactions_and_jobs_live_where_the_worker_discovers_them():
    misplaced = [f"{path.relative_to(ROOT)}: {fn} (@{deco} belongs in {REGISTERING[deco]}.py)"
                 for path, fn, deco in _registered_functions() if path.stem != REGISTERING[deco]]
    assert not misplaced, "handlers and jobs outside handlers.py / jobs.py are never registered:\n" + \
        "\n".join(misplaced)


def test_every_defined_handler_and_job_is_registered_after_discovery():
    events.discover()
    handlers = {name for entries in events.HANDLERS.values() for name, _ in entries}
    missing = []
    for path, fn, deco in _registered_functions():
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        if deco == "scheduled":
            if fn not in events.JOBS:
                missing.append(f"{module}.{fn}")
        elif f"{module}.{fn}" not in handlers:
            missing.append(f"{module}.{fn}")
    assert not missing, f"defined but not registered: {missing}"


def test_domain_code_opens_no_transactions_of_its_own():
    """Handlers get the dispatcher's session; jobs and call-outs get a session factory from the runner."""
    offenders = []
    for path, tree in _modules(DOMAIN):
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module == "app.core.db":
                if any(alias.name == "session_scope" for alias in node.names):
                    offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"session_scope imported in domain code: {offenders}"


def _emitted_topics() -> dict[str, list[str]]:
    """Topic -> where it is emitted, for every `emit(session, <topic>, ...)` in app/ whose topic is a string
    literal or a name bound to one (module constants, as events.py declares them)."""
    events.discover()
    constants: dict[str, str] = {}
    calls: list[tuple[Path, ast.expr]] = []
    for path, tree in _modules(ROOT / "app"):
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                value = node.value
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    constants.setdefault(node.targets[0].id, value.value)
                elif isinstance(value, ast.Call) and _decorator_name(value) == "topic" and value.args and \
                        isinstance(value.args[0], ast.Constant):
                    constants[node.targets[0].id] = value.args[0].value
            if isinstance(node, ast.Call) and _decorator_name(node) == "emit" and len(node.args) >= 2:
                calls.append((path, node.args[1]))
    found: dict[str, list[str]] = {}
    for path, arg in calls:
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            topic = arg.value
        elif isinstance(arg, ast.Name) and arg.id in constants:
            topic = constants[arg.id]
        elif isinstance(arg, ast.Attribute) and arg.attr in constants:
            topic = constants[arg.attr]
        else:
            continue  # a computed topic (e.g. the outbox test's own); covered by the handlers that emit it
        found.setdefault(topic, []).append(str(path.relative_to(ROOT)))
    return found


def test_every_emitted_topic_is_declared():
    emitted = _emitted_topics()
    assert len(emitted) > 30  # the scan found the emitters
    undeclared = {topic: where for topic, where in emitted.items() if topic not in events.TOPICS}
    assert not undeclared, f"emitted but not declared in a context's events.py: {undeclared}"


def test_every_declared_topic_is_emitted():
    emitted = _emitted_topics()
    assert sorted(set(events.TOPICS) - set(emitted)) == []


def test_every_event_has_a_consumer():
    assert unconsumed() == [], "events nobody reacts to (give each a handler or a webhook topic, or remove it)"


def test_events_doc_matches_the_code():
    committed = EVENTS_DOC.read_text() if EVENTS_DOC.exists() else ""
    assert committed == events_markdown(), "docs/events.md is stale: run `careloop export-events`"


def _table_owners() -> dict[str, str]:
    """Table name -> the context whose models.py declares it."""
    owners: dict[str, str] = {}
    for path in sorted(DOMAIN.glob("*/models.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__tablename__"
                                                    for t in node.targets):
                if isinstance(node.value, ast.Constant):
                    owners[node.value.value] = path.parent.name
    return owners


_SQL_TABLE = re.compile(r"\b(?:FROM|JOIN|UPDATE|INTO)\s+([a-z_][a-z0-9_]*)")  # SQL is written upper-case here


def test_no_context_runs_sql_over_another_contexts_tables():
    owners = _table_owners()
    assert {"members", "stores", "appointments", "staff"} <= set(owners)
    trespass = []
    for path, tree in _modules(DOMAIN):
        context = path.relative_to(DOMAIN).parts[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for table in _SQL_TABLE.findall(node.value):
                    owner = owners.get(table.lower())
                    if owner is not None and owner != context:
                        trespass.append(f"{path.relative_to(ROOT)}:{node.lineno} {context} → {table} ({owner})")
    assert not trespass, "raw SQL over another context's tables:\n" + "\n".join(sorted(set(trespass)))
