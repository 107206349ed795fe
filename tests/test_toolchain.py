"""The tools a newcomer runs say what matters and nothing else."""

import subprocess

from cli import PROJECT


def test_redocly_lints_the_contract_without_a_notice_about_the_node_version():
    """Redocly CLI after 2.55.0 prints a 12-line box about Node.js 20 on every run; the README
    says which Node.js the project runs on (package.json `engines`)."""
    result = subprocess.run(
        ["npx", "--no-install", "redocly", "lint", "openapi/tasks.yaml"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Node.js" not in result.stdout + result.stderr
