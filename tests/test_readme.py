"""The README's examples run as written."""

import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def test_ten_line_example_runs_and_fits(tmp_path, monkeypatch):
    block = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    assert len(block.strip().splitlines()) <= 12
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(block, str(README), "exec"), scope)  # our own README, not user input
    w, b = scope["params"]["w"], scope["params"]["b"]
    np.testing.assert_allclose(w + b, [1.0, 2.0, 3.0], atol=0.05)
    assert (tmp_path / "ckpt.npz").exists()
