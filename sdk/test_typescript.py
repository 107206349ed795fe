"""The generated TypeScript types accept what a frontend writes and refuse its mistakes."""

import subprocess

from cli import PROJECT

TSC = ["npx", "--no-install", "tsc", "--noEmit", "--pretty", "false"]


def tsc(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*TSC, *args], cwd=PROJECT, capture_output=True, text=True, timeout=120)


def test_a_frontend_written_against_the_types_compiles():
    result = tsc("-p", "sdk/tsconfig.json")
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_misuse_is_a_type_error():
    options = ["--strict", "--target", "ES2022", "--module", "ESNext", "--moduleResolution", "Bundler"]
    result = tsc(*options, "--skipLibCheck", "sdk/misuse.ts")
    assert result.returncode != 0
    errors = [line for line in result.stdout.splitlines() if line.startswith("sdk/misuse.ts(")]
    assert len(errors) == 4, result.stdout
    assert any('"urgent"' in line for line in errors)
    assert any("not assignable to type 'boolean | undefined'" in line for line in errors)
    assert "Property 'title' is missing" in result.stdout
