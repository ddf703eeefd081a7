"""The realistic-chain example (clipping, masked AdamW, warmup-cosine, accumulation) trains."""

import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("flax")
pytest.importorskip("sklearn")

EXAMPLES = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "examples")


def test_realistic_chain_reaches_96_percent_in_20_epochs():
    out = subprocess.run(
        [sys.executable, "realistic_chain.py", "--epochs", "20"],
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    ).stdout
    accuracy = float(re.search(r"final test accuracy: ([0-9.]+)", out).group(1))
    assert accuracy >= 0.96, out
    # 20 epochs of 84 micro-steps, accumulated 4 to 1, are 420 optimizer steps
    assert "optimizer steps 420" in out
