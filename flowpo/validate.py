"""Static validation of a generated workflow, before anything executes.

It parses, defines ``class Workflow`` with ``__init__(self, llm)`` and ``async __call__``, uses
only known operators with arguments they accept, imports only from an allow-list, and touches no
dunder attributes (the usual way out of a restricted namespace). The first problem found is
returned as a short reason; "" means valid.
"""
from __future__ import annotations

import ast
import builtins
import inspect

from flowpo.operators import OPERATORS, RESULT_TYPES

ALLOWED_IMPORTS = frozenset({"asyncio", "re", "json", "math", "typing", "collections", "itertools",
                             "functools", "string"})
ALLOWED_DUNDERS = frozenset({"__init__", "__call__", "__name__"})
OPERATOR_ARGS = {name: set(list(inspect.signature(cls.__call__).parameters)[1:]) for name, cls in OPERATORS.items()}


def validate_workflow(code: str) -> str:
    if not code.strip():
        return "empty: no <graph> block"
    try:
        tree = ast.parse(code)
    except SyntaxError as exc:
        return f"syntax: {exc.msg} (line {exc.lineno})"
    for check in (_check_imports, _check_dunders, _check_interface, _check_operators):
        reason = check(tree)
        if reason:
            return reason
    return ""


def reason_kind(reason: str) -> str:
    """The counted category of a reason: the text before the first colon."""
    return reason.split(":", 1)[0]


def _check_imports(tree: ast.Module) -> str:
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        for name in names:
            if name.split(".")[0] not in ALLOWED_IMPORTS:
                return f"import: {name} is not allowed (line {node.lineno})"
    return ""


def _check_dunders(tree: ast.Module) -> str:
    for node in ast.walk(tree):
        name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
        if name.startswith("__") and name.endswith("__") and name not in ALLOWED_DUNDERS:
            return f"dunder: {name} (line {node.lineno})"
    return ""


def _workflow_class(tree: ast.Module) -> ast.ClassDef | None:
    return next((n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Workflow"), None)


def _check_interface(tree: ast.Module) -> str:
    cls = _workflow_class(tree)
    if cls is None:
        return "interface: no class Workflow"
    methods = {n.name: n for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    init, call = methods.get("__init__"), methods.get("__call__")
    if init is None or len(init.args.args) != 2:
        return "interface: Workflow needs __init__(self, llm)"
    if not isinstance(call, ast.AsyncFunctionDef):
        return "interface: Workflow needs async __call__(self, problem, entry_point)"
    if len(call.args.args) != 3:
        return "interface: __call__ must take (self, problem, entry_point)"
    return ""


def _check_operators(tree: ast.Module) -> str:
    cls = _workflow_class(tree)
    defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))}
    attribute_ops: dict[str, str] = {}  # self.<attr> -> operator name, from __init__ assignments
    for node in ast.walk(cls):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Name):
            for target in node.targets:
                if (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
                        and target.value.id == "self"):
                    attribute_ops[target.attr] = node.value.func.id
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id[:1].isupper() and func.id not in OPERATORS \
                and func.id not in RESULT_TYPES and func.id not in defined and not hasattr(builtins, func.id):
            return f"operator: unknown operator {func.id} (line {node.lineno})"
        if isinstance(func, ast.Name) and func.id in OPERATORS and (node.keywords or len(node.args) != 1):
            # Operators are built as Op(llm): their limits (timeouts, caps) are not the workflow's to set.
            return f"arguments: an operator is constructed as {func.id}(llm) only (line {node.lineno})"
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "self":
            op = attribute_ops.get(func.attr)
            if op in OPERATOR_ARGS:
                unknown = [k.arg for k in node.keywords if k.arg and k.arg not in OPERATOR_ARGS[op]]
                if unknown:
                    return f"arguments: {op} takes no argument {unknown[0]} (line {node.lineno})"
    return ""
