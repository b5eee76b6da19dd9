"""Runs every ```python block of docs/library.md, in order, in one namespace."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "library.md"
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def python_blocks(text: str) -> list[str]:
    return FENCE.findall(text)


def test_block_extraction():
    text = "a\n```python\nx = 1\n```\n```bash\nls\n```\n```python\ny = x\n```\n"
    assert python_blocks(text) == ["x = 1\n", "y = x\n"]


@pytest.mark.slow
def test_library_guide_runs():
    blocks = python_blocks(DOC.read_text())
    assert len(blocks) >= 8, "docs/library.md lost its examples"
    has_torch = importlib.util.find_spec("torch") is not None
    namespace: dict = {"__name__": "docs_library"}
    skipped = 0
    for i, block in enumerate(blocks):
        if "import torch" in block and not has_torch:
            skipped += 1
            continue
        code = compile(block, f"{DOC.name}[block {i}]", "exec")
        exec(code, namespace)  # an exception names the failing block in the traceback
    if skipped:
        pytest.skip(f"{skipped} block(s) need PyTorch, which is not installed")


@pytest.mark.slow
def test_readme_library_snippet_runs():
    readme = DOC.parents[1] / "README.md"
    blocks = python_blocks(readme.read_text())
    assert blocks, "README.md lost its library example"
    namespace: dict = {"__name__": "readme"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md[block {i}]", "exec"), namespace)
    assert namespace["logits"].shape == (4, 5, 14) and namespace["text"].shape == (1, 200)


LINK = re.compile(r"\]\(([^)\s]+)\)")


RESULTS = sorted(
    str(p.relative_to(DOC.parents[1])) for p in DOC.parents[1].glob("experiments/*/*.md")
)


@pytest.mark.parametrize("doc", ["README.md", "docs/BENCHMARKS.md", "docs/library.md", *RESULTS])
def test_relative_links_point_at_files_that_exist(doc):
    """Every relative link (results files, figures) names a committed path."""
    root = DOC.parents[1]
    path = root / doc
    targets = [t.split("#")[0] for t in LINK.findall(path.read_text())]
    local = [t for t in targets if t and not re.match(r"[a-z]+:", t)]
    missing = [t for t in local if not (path.parent / t).exists()]
    assert not missing, f"{doc} links to missing paths: {missing}"
