"""The README's Python client example runs as written, against the live service."""

import os
import re
import subprocess
import sys

from cli import PROJECT
from sdk.conftest import GENERATED


def readme_block(tag: str) -> str:
    readme = (PROJECT / "README.md").read_text()
    return re.search(rf"<!-- {re.escape(tag)} -->\n```python\n(.*?)```", readme, re.S).group(1)


def test_the_readmes_python_example_runs_as_written(service, mint, tmp_path):
    example = tmp_path / "example.py"
    example.write_text(readme_block("readme-file: example.py"))
    env = {**os.environ, "PYTHONPATH": str(GENERATED), "TOKEN": mint("dev-user"), "TASKS_API": service.base_url}
    result = subprocess.run([sys.executable, str(example)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Buy milk" in result.stdout


def test_the_readmes_streaming_example_reads_the_first_event(service, mint, tmp_path):
    example = tmp_path / "stream_example.py"
    example.write_text(readme_block("readme-file: stream_example.py"))
    env = {**os.environ, "TOKEN": mint("dev-user"), "TASKS_API": service.base_url}
    result = subprocess.run([sys.executable, str(example)], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"up to [A-Za-z0-9_-]+: \d+ changed, \d+ deleted\n", result.stdout), result.stdout
