"""A real-English corpus that needs no download: the Python standard library's own documentation.

Documents are read from the interpreter's stdlib sources with `ast` (never imported, so nothing runs):
one document per module (module, class and function docstrings, each under its qualified name) plus
one per topic of the language reference that ships in `pydoc_data/topics.py`. About 2 MB of text.
The order is sorted and the content depends only on the interpreter, so the corpus is deterministic.

The same files give a built-in text-to-text task: each documented public function's code (docstring
removed) paired with the first sentence of its docstring, a one-line summary.
"""

from __future__ import annotations

import ast
import copy
import re
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

# Test suites, demos and vendored packages are code-heavy and not documentation.
_SKIP_DIRS = {
    "test", "tests", "idle_test", "site-packages", "dist-packages", "lib2to3", "__pycache__",
    "ensurepip", "turtledemo", "pydoc_data",
}  # fmt: skip


def stdlib_root() -> Path:
    """Directory of the running interpreter's standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def iter_parsed_modules(root: Path) -> Iterator[tuple[Path, ast.Module]]:
    """(path relative to `root`, syntax tree) of every stdlib source file outside tests, demos and vendored code."""
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if set(rel.parts[:-1]) & _SKIP_DIRS:
            continue
        try:
            yield rel, ast.parse(path.read_bytes())
        except (SyntaxError, ValueError, OSError):
            continue  # a few stdlib files are templates or need another Python version


def iter_module_documents(root: Path) -> Iterator[dict[str, str]]:
    """One document per stdlib module: its docstrings, each under its qualified name."""
    for rel, tree in iter_parsed_modules(root):
        module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        parts = [f"{module}\n\n{doc}" if (doc := ast.get_docstring(tree)) else module]
        parts += [f"{name}\n{doc}" for name, doc in _iter_docstrings(tree.body, module)]
        if len(parts) > 1 or ast.get_docstring(tree):
            yield {"text": "\n\n".join(parts), "source": str(rel)}


def _iter_docstrings(body: list[ast.stmt], prefix: str) -> Iterator[tuple[str, str]]:
    for node in body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            name = f"{prefix}.{node.name}"
            if node.name.startswith("_") and not node.name.startswith("__"):
                continue  # private helpers are rarely documented for readers
            if doc := ast.get_docstring(node):
                yield name, doc
            if isinstance(node, ast.ClassDef):
                yield from _iter_docstrings(node.body, name)


def iter_topic_documents(root: Path) -> Iterator[dict[str, str]]:
    """One document per topic of the language reference bundled as `pydoc_data.topics`."""
    path = root / "pydoc_data" / "topics.py"
    if not path.is_file():
        return
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign):
            topics = ast.literal_eval(node.value)
            for name in sorted(topics):
                yield {"text": topics[name].strip(), "source": f"pydoc_data/topics.py:{name}"}


def iter_builtin_documents(python_version: str = sys.version) -> Iterator[dict[str, str]]:
    """All documents of the built-in corpus, in a fixed order.

    `python_version` is unused in the body; it is part of the arguments so that `datasets`' cache
    (keyed on them) never serves one interpreter's corpus to another.
    """
    root = stdlib_root()
    yield from iter_module_documents(root)
    yield from iter_topic_documents(root)


def iter_code_summaries(python_version: str = sys.version) -> Iterator[dict[str, str]]:
    """(code, summary) pairs: a documented public function or method without its docstring, and the
    docstring's first sentence. Summaries of 3 to 25 words only: shorter ones say little, longer ones
    are rarely one-line summaries. `python_version` keys the `datasets` cache, as above."""
    for rel, tree in iter_parsed_modules(stdlib_root()):
        for node in _iter_public_functions(tree.body):
            summary = _first_sentence(ast.get_docstring(node) or "")
            if not 3 <= len(summary.split()) <= 25 or len(node.body) < 2:
                continue
            bare = copy.copy(node)
            bare.body = node.body[1:]  # the docstring is the answer, so it leaves the code
            yield {"code": ast.unparse(bare), "summary": summary, "source": f"{rel}:{node.lineno}"}


def _iter_public_functions(body: list[ast.stmt]) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
            yield node
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            yield from _iter_public_functions(node.body)


def _first_sentence(doc: str) -> str:
    """The docstring's first paragraph, on one line, up to its first full stop."""
    paragraph = " ".join(doc.split("\n\n", 1)[0].split())
    match = re.match(r"(.+?[.!?])(\s|$)", paragraph)
    return match.group(1) if match else paragraph
