"""Tenancy tests that are not written once for both APIs.

The tests of ``Tenancy`` and ``AsyncTenancy`` live in ``test_tenancy_async.py`` (the source)
and its generated sync twin ``test_tenancy_sync.py``. What stays here is not a test of one of
the two classes: the docs example test runs the page's sync *and* async examples, each in a
subprocess, so generating a second copy would only run them twice. (``clone_tenant``, which
only ``Tenancy`` has, is tested in ``test_clone.py``.)
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("index", [0, 1], ids=["sync", "async"])
def test_docs_examples_run(dsn: str, index: int) -> None:
    """The sync and async examples of docs/tenants.md run as written."""
    page = Path(__file__).parents[2] / "docs" / "tenants.md"
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.DOTALL)
    env = dict(os.environ, PGTENANTS_DSN=dsn)
    done = subprocess.run(
        [sys.executable, "-c", blocks[index]], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
