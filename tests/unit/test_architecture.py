"""The seams between stages: no stage imports another, and dvc.yaml's deps cover what each stage runs.

Both are computed from the source (AST imports, transitively, lazy imports inside functions included),
so a new import that DVC would not see fails here instead of leaving a stale output after `dvc repro`.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pipelines import cli

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "pipelines"
# What `python -m pipelines -q <stage>` runs before the stage's own module (cli imports it by name).
ENTRY = ("pipelines.__main__", "pipelines.cli")


def module_file(name: str, root: Path = ROOT) -> Path | None:
    """The file of a pipelines module or package, None for anything outside the package."""
    if name != "pipelines" and not name.startswith("pipelines."):
        return None
    base = root.joinpath(*name.split("."))
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path = ROOT) -> Iterator[str]:
    """Every pipelines module a file imports, at top level or inside functions; parents included."""
    here = _module_name(path, root).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]  # `from pkg import submodule`
        for name in names:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ too
                yield ".".join(parts[:i])


def import_closure(roots: tuple[str, ...], root: Path = ROOT) -> set[Path]:
    """Files of the package that running `roots` can execute (empty __init__ files left out)."""
    seen: set[Path] = set()
    todo = [f for f in (module_file(r, root) for r in roots) if f is not None]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        found = (module_file(m, root) for m in imported_modules(path, root))
        todo.extend(f for f in found if f is not None and f not in seen)
    return {p for p in seen if not (p.name == "__init__.py" and p.stat().st_size == 0)}


def stage_files(module: str) -> set[Path]:
    """The files that belong to a stage itself: its module, or its whole package."""
    path = module_file(module)
    assert path is not None, module
    return set(path.parent.rglob("*.py")) if path.name == "__init__.py" else {path}


STAGE_MODULES = sorted({module for module, _, _ in cli.STAGES.values()})
DVC_STAGES: dict[str, dict[str, object]] = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_the_closure_sees_lazy_and_relative_imports() -> None:
    closure = import_closure(("pipelines.serving",))
    assert PACKAGE / "scoring_app.py" in closure  # imported inside a function
    assert PACKAGE / "model" / "tracking.py" in closure  # `from pipelines.model import tracking`, lazily
    assert PACKAGE / "config" / "serving.py" in closure  # via the package __init__
    assert PACKAGE / "clean.py" not in closure


@pytest.mark.parametrize("module", STAGE_MODULES)
def test_no_stage_imports_another_stage(module: str) -> None:
    closure = import_closure((module,))
    own = stage_files(module)
    for other in STAGE_MODULES:
        if other == module:
            continue
        shared = (closure - own) & stage_files(other)
        assert not shared, f"{module} imports stage {other} ({sorted(p.name for p in shared)}): move it to a toolkit"


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("stage", sorted(DVC_STAGES))
def test_dvc_deps_cover_the_stage_import_closure(stage: str) -> None:
    spec = DVC_STAGES[stage]
    cmd = str(spec["cmd"])
    assert cmd.startswith("python -m pipelines -q "), cmd
    module = cli.STAGES[cmd.split()[-1]][0]
    deps = [str(d) for d in spec.get("deps", [])]  # type: ignore[attr-defined]
    missing = sorted(p.relative_to(ROOT).as_posix() for p in import_closure((*ENTRY, module)) if not _covered(p, deps))
    assert not missing, f"dvc.yaml stage {stage} runs code it does not list in deps: {missing}"


def test_the_closure_follows_a_lazy_relative_import_of_another_module(tmp_path: Path) -> None:
    """Negative case on a made-up package: the check can fail (a stage reaching into another is seen)."""
    pkg = tmp_path / "pipelines"
    (pkg / "tools").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "tools" / "__init__.py").write_text("VERSION = 1\n")
    (pkg / "tools" / "helper.py").write_text("def run():\n    from .. import train\n    return train\n")
    (pkg / "train.py").write_text("X = 1\n")
    (pkg / "evaluate.py").write_text("from pipelines.tools import helper\n")
    closure = {p.relative_to(tmp_path).as_posix() for p in import_closure(("pipelines.evaluate",), tmp_path)}
    assert closure == {"pipelines/evaluate.py", "pipelines/tools/__init__.py", "pipelines/tools/helper.py",
                       "pipelines/train.py"}  # the empty pipelines/__init__.py is left out


# ---- user errors: one line and exit code 2, whatever the stage --------------------------------

def _user_error_classes() -> list[type[BaseException]]:
    """Every exception class the package defines whose name ends in Error, internal ones excepted."""
    import importlib
    import inspect

    internal = {"MonitorError", "RequestError", "_NotUtf8Error", "_DuplicateKeyError"}  # bugs or HTTP-only
    found: dict[str, type[BaseException]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "__main__.py" or path.stem.startswith("bench"):
            continue
        module = importlib.import_module(_module_name(path, ROOT))
        for name, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__ == module.__name__ and name.endswith("Error"):
                found.setdefault(f"{obj.__module__}.{name}", obj)
    return [cls for key, cls in sorted(found.items()) if key.rsplit(".", 1)[1] not in internal]


def test_every_user_error_is_a_pipeline_input_error() -> None:
    from pipelines.errors import PipelineInputError

    classes = _user_error_classes()
    names = {c.__name__ for c in classes}
    assert {"FeaturesError", "MonitorInputError", "FeatureExportError", "PromoteError", "ParamsError"} <= names
    outside = [f"{c.__module__}.{c.__name__}" for c in classes if not issubclass(c, PipelineInputError)]
    assert not outside, f"user errors the CLI would print with a traceback: {outside}"


@pytest.mark.parametrize("stage", ["features", "monitor", "train"])
def test_a_missing_upstream_output_is_one_line_and_exit_2(
    stage: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "params.yaml").write_text("seed: 1\n", encoding="utf-8")
    assert cli.main(["--root", str(tmp_path), "-q", stage]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {stage}: ")
    assert "\n" not in err  # one line, no traceback
    assert str(tmp_path) in err  # names the file that is missing


def test_quiet_is_accepted_after_the_stage_name() -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["generate", "-q"]).quiet is True
    assert parser.parse_args(["-q", "generate"]).quiet is True  # a global -q is not reset by the stage's default
    assert parser.parse_args(["generate"]).quiet is False



def test_global_options_are_accepted_after_the_stage_name(tmp_path: Path) -> None:
    parser = cli.build_parser()
    after = parser.parse_args(["train", "--root", str(tmp_path), "--params", "p.yaml"])
    assert (after.root, after.params) == (tmp_path, Path("p.yaml"))
    before = parser.parse_args(["--root", str(tmp_path), "train"])
    assert (before.root, before.params) == (tmp_path, None)  # not reset by the stage's own option


# ---- no environment changes at import ------------------------------------------------------------

_IMPORT_ALL = """
import importlib, json, os, pkgutil
before = dict(os.environ)
import pipelines
for m in pkgutil.walk_packages(pipelines.__path__, "pipelines."):
    if m.name != "pipelines.__main__":
        importlib.import_module(m.name)
print(json.dumps(sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))))
"""


def _env_names_in_source() -> set[str]:
    """Every string constant of the package that looks like an environment variable name."""
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.fullmatch(r"[A-Z][A-Z0-9_]{3,}",
                                                                                                node.value):
                names.add(node.value)
    return names


def test_importing_the_package_sets_no_environment_variable_of_its_own() -> None:
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", _IMPORT_ALL], env=env, capture_output=True, text=True,
                          timeout=300, check=True)
    changed = set(json.loads(done.stdout.strip().splitlines()[-1]))
    ours = _env_names_in_source()
    assert {"MLFLOW_DISABLE_TELEMETRY", "DBT_SEND_ANONYMOUS_USAGE_STATS", "GIT_PYTHON_REFRESH"} <= ours
    # third-party libraries may set their own (OpenMP, jemalloc) at import; the project's are set
    # where they apply (cli.main, tracking.connect, the dbt call), never as an import side effect
    assert not changed & ours, f"set at import: {sorted(changed & ours)}"
