"""Generates the SDKs from the source contract into build/sdk/, failing on any generator warning.

python sdk/generate.py      # build/sdk/python (openapi-python-client), build/sdk/ts (openapi-typescript)
"""

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parent.parent
CONTRACT = PROJECT / "openapi" / "tasks.yaml"
OUT = PROJECT / "build" / "sdk"
BIN = Path(sys.executable).parent


def run(command: list[str]) -> None:
    result = subprocess.run(command, cwd=PROJECT, capture_output=True, text=True)
    # npm's own notices about the machine's npm configuration are not the generator's.
    output = "".join(
        line for line in (result.stdout + result.stderr).splitlines(True) if not line.startswith("npm warn")
    )
    print(output, end="")
    if result.returncode != 0:
        sys.exit(f"{command[0]} failed with exit status {result.returncode}")
    if "warning" in output.lower():
        sys.exit(f"{command[0]} warned; the contract must generate cleanly")


STREAM_MEDIA_TYPE = "text/event-stream"


def without_event_streams(contract: dict) -> dict:
    """The contract without its event-stream operations, for openapi-python-client: it reads a
    `text/*` answer as one string and would parse a whole stream as one event
    (`ChangesEvent.from_dict(response.text)`). Python reads the stream with httpx (README)."""
    paths = {}
    for template, item in contract["paths"].items():
        kept = {
            key: value
            for key, value in item.items()
            if not (
                isinstance(value, dict)
                and STREAM_MEDIA_TYPE in value.get("responses", {}).get("200", {}).get("content", {})
            )
        }
        if any(isinstance(value, dict) and "operationId" in value for value in kept.values()):
            paths[template] = kept
    return {**contract, "paths": paths}


def main() -> None:
    shutil.rmtree(OUT, ignore_errors=True)
    python_input = OUT / "python-contract.yaml"
    python_input.parent.mkdir(parents=True)
    python_input.write_text(
        yaml.safe_dump(without_event_streams(yaml.safe_load(CONTRACT.read_text())), sort_keys=False)
    )
    run(
        [
            str(BIN / "openapi-python-client"),
            "generate",
            "--path",
            str(python_input),
            "--output-path",
            str(OUT / "python"),
        ]
    )
    # A default makes a field optional to send, not required: keep request bodies honest.
    typescript = ["npx", "--no-install", "openapi-typescript", str(CONTRACT), "--default-non-nullable", "false"]
    run([*typescript, "--output", str(OUT / "ts" / "schema.d.ts")])


if __name__ == "__main__":
    main()
