"""The layers of the house, one way down, checked on every import (at module level or inside a
function) of every module, so that they hold without anyone remembering them:

  driver         driver/: train, evaluate, CLI, run directory, reports              (top: anything)
  actors         actors/: generator, executor, evaluator, launch, the streaming engine  (infrastructure, core)
  infrastructure sandbox/, trainer/, flowpo/llm (the broker)                           (the core, and itself)
  core           flowpo/*.py: config, records, errors, tasks, scorers, prompts, ...    (the core, maths)
  maths          flowpo/maths: pairs, groups, losses: pure functions                  (itself only)
  runtime        sandbox/runtime: runs inside the sandbox, standard library only      (nothing of ours)

The pure maths sits in the core, below the rest of it, so that the algorithm registry (flowpo/algorithms.py), which
the config reads for its list of names, holds each algorithm's items and loss in one entry.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("driver", "flowpo", "actors", "trainer", "sandbox")
ALLOWED = {
    "driver": {"driver", "actors", "infrastructure", "core", "maths"},
    "actors": {"actors", "infrastructure", "core", "maths"},
    "core": {"core", "maths"},
    "maths": {"maths"},
    "runtime": set(),
}


def layer(module: str) -> str:
    if module.startswith("driver"):
        return "driver"
    if module.startswith("flowpo.llm"):
        return "infrastructure:flowpo.llm"
    if module.startswith("sandbox.runtime"):
        return "runtime"
    if module.startswith("flowpo.maths"):
        return "maths"
    if module.startswith(("sandbox", "trainer")):
        return "infrastructure:" + module.split(".")[0]
    return module.split(".")[0] if module.startswith("actors") else "core"


def allowed(importer: str, imported: str) -> bool:
    if importer.startswith("infrastructure:"):  # the core, the maths and its own package: never a sibling
        return imported in ("core", "maths") or imported == importer
    kinds = ALLOWED[importer]
    return imported.split(":")[0] in kinds


def project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of one of our packages in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            names = names[:1] if node.module != "flowpo" else names[1:]  # `from flowpo import operators`
        else:
            continue
        found += [(node.lineno, name) for name in names if name.split(".")[0] in PACKAGES]
    return found


def modules() -> list[tuple[str, Path]]:
    return [(".".join(path.relative_to(ROOT).with_suffix("").parts), path)
            for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))]


def test_every_import_goes_down_the_layers():
    broken = []
    for name, path in modules():
        for line, imported in project_imports(path):
            if not allowed(layer(name), layer(imported)):
                broken.append(f"{path.relative_to(ROOT)}:{line}: {layer(name)} imports {imported} ({layer(imported)})")
    assert broken == [], "\n".join(broken)


def test_the_rules_catch_a_wrong_import():
    assert not allowed(layer("flowpo.tasks"), layer("sandbox.pool"))  # core → infrastructure
    assert not allowed(layer("sandbox.pool"), layer("flowpo.llm.broker"))  # infrastructure → a sibling
    assert not allowed(layer("actors.executor"), layer("driver.train"))  # up
    assert not allowed(layer("sandbox.runtime.flowpo_tests"), layer("flowpo.errors"))  # runtime → anything
    assert not allowed(layer("flowpo.maths.pairs"), layer("flowpo.records"))  # maths → the core
    assert not allowed(layer("flowpo.algorithms"), layer("trainer.learner"))  # core → the learner
    assert allowed(layer("flowpo.algorithms"), layer("flowpo.maths.losses"))
    assert allowed(layer("trainer.learner"), layer("flowpo.model")) and allowed(layer("sandbox.pool"),
                                                                                 layer("sandbox.verdicts"))
    assert project_imports(ROOT / "tests" / "test_layers.py") == []  # this file imports none of ours
    assert "flowpo.operators" in {m for _, m in project_imports(ROOT / "sandbox" / "backend.py")}  # the scanner sees


# The folders, bottom to top: one layer each (flowpo/llm, the broker, is infrastructure kept beside
# the core it serves; only actors import it). `ls` reads as the house does.
FOLDER_RANK = {"flowpo": 0, "sandbox": 1, "trainer": 1, "actors": 2, "driver": 3}


def folder_upward(importer: str, imported: str) -> bool:
    return FOLDER_RANK[imported.split(".")[0]] > FOLDER_RANK[importer.split(".")[0]]


def test_no_folder_imports_a_folder_above_it():
    upward = [f"{path.relative_to(ROOT)}:{line}: imports {imported}"
              for name, path in modules() for line, imported in project_imports(path)
              if folder_upward(name, imported)]
    assert upward == [], "\n".join(upward)
    assert folder_upward("flowpo.algorithms", "trainer.learner") and folder_upward("actors.launch", "driver.flow")
    assert not folder_upward("driver.train", "flowpo.maths.losses")
