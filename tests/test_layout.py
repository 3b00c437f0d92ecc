"""The layout of jobs/ holds by construction: read from the source's imports, so a new
circle, a module importing the CLI, or Celery outside jobs/queue fails here."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import ROOT

# The repository's folders, each installed as ``anigenre.<folder>``; ``anigenre/`` is the
# package itself (the Python API).
PACKAGES = ("config", "core", "scraper", "models", "jobs", "anigenre")
CELERY_LIBS = ("celery", "kombu", "redis")
# Celery's pure crontab parser validates the schedule setting at load time: no app, no broker.
ALLOWED_OUTSIDE_QUEUE = {("anigenre.config.settings", "celery.schedules")}


def _module_name(path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts if parts[0] == "anigenre" else ("anigenre", *parts))


def _imports(path) -> set[str]:
    """Every module this file imports, at any depth (lazy imports in functions count)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    modules = {_module_name(p): p for p in files}
    return {name: {m for m in _imports(path) if m in modules} for name, path in modules.items()}


def test_no_import_circles():
    """Imports inside functions count: a circle deferred to call time is still two modules
    that cannot be understood (or moved) apart. A package's own ``__init__`` running first
    is how Python imports any submodule, not a circle."""
    graph = {
        name: {d for d in deps if d != name and not name.startswith(d + ".")}
        for name, deps in _graph().items()
    }
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep) :] + [dep]
                raise AssertionError("import circle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_nothing_imports_the_cli():
    for name, deps in _graph().items():
        if name.startswith("anigenre.jobs.cli"):
            continue
        assert not any(
            d == "anigenre.jobs.cli" or d.startswith("anigenre.jobs.cli.") for d in deps
        ), name


# What a front end must leave to the layers below: syncing with a bucket (the Registry and
# the service do it) and Celery (the service's dispatcher does). `anigenre worker` and
# `beat` start Celery's own programs, so they build its app.
BELOW_THE_FRONT_ENDS = ("anigenre.core.mirror", "anigenre.models.remote", "anigenre.jobs.queue")
FRONT_ENDS = ("anigenre.jobs.cli", "anigenre.jobs.web", "anigenre.jobs.api")
CELERY_COMMANDS = {"anigenre.jobs.cli.worker_cmd"}


def test_front_ends_never_sync_a_bucket_or_talk_to_celery():
    offenders = sorted(
        (name, dep)
        for name, deps in _graph().items()
        if name.startswith(FRONT_ENDS) and name not in CELERY_COMMANDS
        for dep in deps
        if dep.startswith(BELOW_THE_FRONT_ENDS)
    )
    assert offenders == []


def test_only_the_queue_package_imports_celery_kombu_or_redis():
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    offenders = []
    for path in files:
        name = _module_name(path)
        if name.startswith("anigenre.jobs.queue"):
            continue
        for imported in _imports(path):
            if imported.split(".")[0] in CELERY_LIBS and not any(
                (name, imported.removesuffix(".crontab_parser")) == allowed
                for allowed in ALLOWED_OUTSIDE_QUEUE
            ):
                offenders.append((name, imported))
    assert offenders == []


def test_importing_the_project_builds_no_celery_app():
    """Only the worker entry module builds an app on import; everything else, the CLI
    included, reads no ./anigenre.toml by being imported."""
    modules = sorted(
        n for n in _graph() if n != "anigenre.jobs.queue.worker" and not n.endswith("__main__")
    )
    code = (
        "import importlib, sys\n"
        f"for m in {modules!r}:\n"
        "    importlib.import_module(m)\n"
        "from celery import _state\n"
        "apps = [a.main for a in _state._get_active_apps()]\n"
        "print(apps)\n"
        "sys.exit(1 if apps else 0)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


def test_every_package_folder_is_in_the_wheel():
    """pyproject lists the packages (they are mapped from the client's folders), so a new
    folder left off the list would be missing from an installed anigenre."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {_module_name(p) for pkg in PACKAGES for p in (ROOT / pkg).rglob("__init__.py")}
    assert found == listed


def test_no_module_imports_a_generic_top_level_name():
    """Everything is imported as ``anigenre.<folder>``: a bare ``import models`` would load a
    user's own ``models/`` package, or ours twice under two names."""
    generic = {pkg for pkg in PACKAGES if pkg != "anigenre"}
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    files += [*(ROOT / "tests").glob("*.py"), *(ROOT / "bench").glob("*.py")]
    offenders = sorted(
        f"{path.relative_to(ROOT)}: {imported}"
        for path in files
        for imported in _imports(path)
        if imported.split(".")[0] in generic
    )
    assert offenders == []


def test_tests_never_name_the_machines_redis():
    """The machine's Redis (the default port) holds other people's data: tests start their own
    redis-server on a free port (tests/procs.py) and never flush or write a shared one."""
    offenders = [
        p.name
        for p in (ROOT / "tests").glob("*.py")
        if "63" + "79" in p.read_text()  # split so this file does not name it either
    ]
    assert offenders == []
