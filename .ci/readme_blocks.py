"""Runs the README's code blocks that a reader would run, as written, against the server of its
start command, so that a snippet that breaks fails CI. Standard library only.

A block is taken by the HTML comment on the line before its opening fence:
  <!-- readme-run -->            bash runs it from the checkout; it must exit 0 and print no problem
                                 (an RFC 9457 body) unless the tag says `readme-run: problems`
  <!-- readme-file: PATH -->     written to PATH in the checkout before the runs (removed after);
                                 a .ts/.mts file must also type-check (tsc --strict)
  <!-- readme-serve: PORT -->    starts a server on PORT: it must answer /ready, then stop on Ctrl-C
  <!-- readme-quote: PATH -->    excerpts of the file PATH: each part between blank lines is in it
                                 as written (indentation aside)
  <!-- readme-skip: REASON -->   not run, and why (settings to copy, Docker, a stream that never ends)
Every bash, python and ts block carries one of these (or is the start, test or system-packages
command, which .ci/run runs): an untagged one fails, so a new snippet is run or says why not.
Blocks run in the README's order, once the start command serves. Where port 8000 or 8001 is
taken (a shared machine), free ones are used in their place: the start command gets PORT and
the blocks' 8000 and 8001 are replaced.

    python3 .ci/readme_blocks.py
"""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KINDS = "readme-run|readme-file|readme-serve|readme-quote|readme-skip|start-command|test-command|system-packages"
TAG = re.compile(rf"<!-- ({KINDS})(?::\s*(.+?))? -->")
RUNNABLE = {"bash", "sh", "shell", "python", "ts", "typescript"}
NOT_RUN_HERE = {"readme-skip", "start-command", "test-command", "system-packages"}


@dataclass
class Block:
    kind: str
    argument: str | None
    text: str
    line: int


def untagged(readme: str) -> list[str]:
    """The opening fences of runnable languages with no tag on the line before."""
    lines, inside, found = readme.splitlines(), False, []
    for number, line in enumerate(lines):
        if not line.startswith("```"):
            continue
        if not inside and line[3:].strip() in RUNNABLE and not TAG.fullmatch(lines[number - 1].strip()):
            found.append(
                f"README.md:{number + 1}: a {line[3:].strip()} block with no tag (readme-run, ..., readme-skip)"
            )
        inside = not inside
    return found


def blocks(readme: str) -> list[Block]:
    """Every tagged fenced block, in the README's order."""
    lines = readme.splitlines()
    found = []
    for number, line in enumerate(lines):
        tag = TAG.fullmatch(line.strip())
        if not tag:
            continue
        if number + 1 >= len(lines) or not lines[number + 1].startswith("```"):
            sys.exit(f"README.md:{number + 1}: {line.strip()} is not followed by a fenced block")
        end = next(i for i in range(number + 2, len(lines)) if lines[i].startswith("```"))
        found.append(Block(tag.group(1), tag.group(2), "\n".join(lines[number + 2 : end]) + "\n", number + 1))
    return found


def free(port: int) -> int:
    """`port` if nothing listens on it, else one the kernel picks."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def problems(output: str) -> list[dict]:
    """The RFC 9457 bodies in what a block printed (curl prints bodies back to back)."""
    decoder, found, index = json.JSONDecoder(), [], 0
    while (index := output.find("{", index)) != -1:
        try:
            value, end = decoder.raw_decode(output, index)
        except ValueError:
            index += 1
            continue
        if isinstance(value, dict) and {"type", "status", "code"} <= value.keys():
            found.append(value)
        index = end
    return found


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def start(command: str, port: int, env: dict, seconds: float = 600) -> subprocess.Popen:
    """Runs a serving command in its own process group until /ready answers on `port`."""
    process = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", command], cwd=ROOT, env=env, start_new_session=True, text=True
    )
    deadline = time.monotonic() + seconds
    while not ready(port):
        if process.poll() is not None:
            raise RuntimeError(f"it exited with {process.returncode} before serving on port {port}")
        if time.monotonic() > deadline:
            stop(process)
            raise RuntimeError(f"it did not serve on port {port} in {seconds:.0f} s")
        time.sleep(0.5)
    return process


def stop(process: subprocess.Popen) -> int:
    """Ctrl-C, as a reader stops it."""
    os.killpg(process.pid, signal.SIGINT)
    try:
        return process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.wait()


def on_ports(text: str, ports: dict[str, str]) -> str:
    for written, used in ports.items():
        text = re.sub(rf"\b{written}\b", used, text)
    return text


def stripped(text: str) -> str:
    return "\n".join(line.strip() for line in text.splitlines())


def check(block: Block, ports: dict[str, str], env: dict) -> str | None:
    """Runs or checks one block; the failure in one line, or None."""
    text = on_ports(block.text, ports)
    if block.kind == "readme-quote":  # indentation aside: an excerpt may start inside a nested block
        source = stripped((ROOT / block.argument).read_text())
        missing = [part for part in stripped(block.text).split("\n\n") if part not in source]
        return f"not in {block.argument}: {missing[0].splitlines()[0]}" if missing else None
    if block.kind == "readme-file" and block.argument.endswith((".ts", ".mts")):
        tsc = ["npx", "--no-install", "tsc", "--strict", "--noEmit", "--skipLibCheck", "--target", "ES2022"]
        tsc += ["--module", "ESNext", "--moduleResolution", "Bundler", block.argument]
        result = subprocess.run(tsc, cwd=ROOT, text=True, capture_output=True)
        return None if result.returncode == 0 else "does not type-check: " + result.stdout.strip().replace("\n", "; ")
    if block.kind == "readme-serve":
        port = int(ports.get(block.argument, block.argument))
        try:
            code = stop(start(text, port, env, seconds=600))
        except RuntimeError as error:
            return str(error)
        return None if code == 0 else f"Ctrl-C ended it with exit {code}"
    if block.kind == "readme-run":
        bash = ["bash", "-euo", "pipefail", "-c", text]
        result = subprocess.run(bash, cwd=ROOT, env=env, text=True, capture_output=True)
        print(re.sub(r"eyJ[\w.-]+", "<token>", result.stdout + result.stderr).rstrip("\n"), flush=True)
        if result.returncode != 0:
            return f"exit {result.returncode}"
        unexpected = [p for p in problems(result.stdout) if block.argument != "problems"]
        return f"answered {unexpected[0]['status']} {unexpected[0]['code']}" if unexpected else None
    return None


def main() -> None:
    readme = (ROOT / "README.md").read_text()
    if missing := untagged(readme):
        sys.exit("\n".join(missing))
    found = blocks(readme)
    ports = {"8000": str(free(8000))}
    ports["8001"] = str(free(8001) if ports["8000"] != "8001" else free(0))
    ports = {written: used for written, used in ports.items() if written != used}
    env = {**os.environ, "PORT": ports.get("8000", "8000")}
    written = [ROOT / b.argument for b in found if b.kind == "readme-file"]
    for block in found:
        if block.kind == "readme-file":
            (ROOT / block.argument).write_text(on_ports(block.text, ports))
    start_command = next(b.text for b in found if b.kind == "start-command")
    failures, server = [], None
    try:
        server = start(start_command, int(env["PORT"]), env)
        for block in found:
            if block.kind in NOT_RUN_HERE:
                continue
            print(f"+ README.md:{block.line} {block.kind}{': ' + block.argument if block.argument else ''}", flush=True)
            failure = check(block, ports, env)
            if failure:
                failures.append(f"README.md:{block.line} ({block.kind}): {failure}")
                print(f"  FAILED: {failure}", flush=True)
    finally:
        if server is not None:
            stop(server)
        for path in written:
            path.unlink(missing_ok=True)
    checked = len([block for block in found if block.kind not in NOT_RUN_HERE])
    print("\n".join(failures))
    print(f"readme-blocks: {checked - len(failures)} passed, {len(failures)} failed")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
