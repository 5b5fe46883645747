"""The README's Python examples run as written (with the shipped weights and bundled images)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_python_examples():
    assert len(BLOCKS) >= 2


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_python_example_runs(code, tmp_path, monkeypatch):
    """Each block runs in an empty folder that sees the repository's genrestore/ (for the bundled
    images its paths name); whatever it writes stays there."""
    (tmp_path / "genrestore").symlink_to(README.parent / "genrestore")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md python block", "exec"), {"__name__": "readme_example"})
