#!/usr/bin/env python3
"""The one entry point for working on gradtx (standard library only).

    python3 dev.py train [args...]   train the example MLP (examples/mnist_mlp.py)
    python3 dev.py test [args...]    run the tests, not the slow ones (--slow: only the slow ones)
    python3 dev.py docs              build the docs, warnings as errors, into docs/_build/html
    python3 dev.py lint              ruff (lint and format check) and mypy, as CI runs them
    python3 dev.py bench [args...]   run benchmarks/run.py

Each command first makes sure that ./.venv exists and holds gradtx installed in
editable mode with the extras it needs; it reinstalls only when pyproject.toml
changes. Then it runs with that environment's Python and exits with its status.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(ROOT, ".venv")
STAMP = os.path.join(VENV, ".dev-stamp")
BASE_EXTRAS = ("test", "examples", "docs")
PYTEST_NO_TESTS = 5


def say(message: str) -> None:
    print(f"dev.py: {message}", flush=True)


def venv_python() -> str:
    if os.name == "nt":
        return os.path.join(VENV, "Scripts", "python.exe")
    return os.path.join(VENV, "bin", "python")


def project_hash() -> str:
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def read_stamp() -> dict:
    try:
        with open(STAMP) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def run(command: list[str], cwd: str | None = None, env: dict | None = None) -> int:
    try:
        return subprocess.call(command, cwd=cwd, env=env)
    except KeyboardInterrupt:
        return 130


def bootstrap_pip() -> None:
    """Install pip into a venv made without it (a Python whose ensurepip is missing), with the
    pip of the Python running this script."""
    command = [sys.executable, "-m", "pip", "--python", venv_python(), "install", "--quiet", "pip"]
    if run(command) != 0:
        sys.exit("dev.py: could not install pip into .venv; install Python's venv module (with ensurepip) and retry")


def create_venv() -> None:
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    if subprocess.call([sys.executable, "-m", "venv", "--clear", VENV], **quiet) != 0:
        # Some system Pythons ship without ensurepip; make the venv bare and fetch pip.
        if subprocess.call([sys.executable, "-m", "venv", "--clear", "--without-pip", VENV]) != 0:
            sys.exit("dev.py: `python3 -m venv` failed; install Python's venv module and retry")
        bootstrap_pip()


def ensure_venv(extras: tuple[str, ...]) -> str:
    """Create .venv and install gradtx with ``extras`` unless already done for this pyproject.toml."""
    stamp, digest = read_stamp(), project_hash()
    fresh = not os.path.exists(venv_python())
    if not fresh and stamp.get("pyproject") == digest and set(extras) <= set(stamp.get("extras", [])):
        return venv_python()
    if not fresh and stamp.get("pyproject") == digest:
        extras = tuple(sorted(set(extras) | set(stamp.get("extras", []))))
    if fresh:
        reason = "creating .venv"
    elif stamp:
        reason = "updating .venv (pyproject.toml changed)"
    else:
        reason = "setting up the existing .venv"
    say(f"{reason} and installing gradtx[{','.join(extras)}]; this takes a few minutes the first time")
    if fresh:
        create_venv()
    if os.path.exists(STAMP):
        os.remove(STAMP)  # an interrupted install must not look finished
    pip = [venv_python(), "-m", "pip", "--disable-pip-version-check", "--no-input", "--quiet"]
    # Errors still show; the build backend's notes about packaging style do not.
    quiet_build = dict(os.environ, PYTHONWARNINGS="ignore")
    if run(pip + ["install", "--editable", f".[{','.join(extras)}]"], cwd=ROOT, env=quiet_build) != 0:
        sys.exit("dev.py: installing into .venv failed (see pip's messages above)")
    with open(STAMP, "w") as f:
        json.dump({"pyproject": digest, "extras": list(extras)}, f)
    return venv_python()


def cmd_train(args: list[str]) -> int:
    python = ensure_venv(BASE_EXTRAS)
    say("training the example MLP with Adam (examples/mnist_mlp.py)")
    return run([python, os.path.join(ROOT, "examples", "mnist_mlp.py"), *args])


def cmd_test(args: list[str]) -> int:
    python = ensure_venv(BASE_EXTRAS)
    if "--slow" in args:
        args = [a for a in args if a != "--slow"]
        marker, what = ["-m", "slow"], "the slow tests"
    else:
        has_marker = any(a == "-m" or a.startswith("-m") and not a.startswith("--") for a in args)
        marker, what = ([] if has_marker else ["-m", "not slow"]), "the tests"
    # The suite is bound by XLA compilation, one core at a time: spread its files over the
    # cores (pytest-xdist), keeping each file on one worker so module fixtures run once.
    chose_workers = any(a.startswith(("-n", "--numprocesses", "--collect-only", "--co")) for a in args)
    parallel = [] if chose_workers else ["-n", "auto", "--dist", "loadfile"]
    say(f"running {what} with pytest")
    code = run([python, "-m", "pytest", *marker, *parallel, *args], cwd=ROOT)
    if code == PYTEST_NO_TESTS:
        say("pytest collected no tests: that counts as a failure (exit status 5)")
    return code


def cmd_docs(args: list[str]) -> int:
    python = ensure_venv(BASE_EXTRAS)
    out = os.path.join("docs", "_build", "html")
    say(f"building the docs into {out} (warnings are errors)")
    return run([python, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "docs", out, *args], cwd=ROOT)


def cmd_bench(args: list[str]) -> int:
    script = os.path.join(ROOT, "benchmarks", "run.py")
    if not os.path.exists(script):
        say("there is no benchmarks/run.py yet; nothing to run")
        return 0
    python = ensure_venv(BASE_EXTRAS + ("bench",))
    say("running the benchmarks (benchmarks/run.py)")
    return run([python, script, *args], cwd=ROOT)


def cmd_lint(args: list[str]) -> int:
    python = ensure_venv(BASE_EXTRAS + ("lint",))
    steps = [
        ("ruff check", [python, "-m", "ruff", "check", "--no-cache", "."]),
        ("ruff format --check", [python, "-m", "ruff", "format", "--check", "--no-cache", "."]),
        ("mypy gradtx", [python, "-m", "mypy", "--no-incremental"]),
    ]
    failed = []
    for name, command in steps:
        say(f"running {name}")
        if run(command + args, cwd=ROOT) != 0:
            failed.append(name)
    if failed:
        say(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


COMMANDS = {"train": cmd_train, "test": cmd_test, "docs": cmd_docs, "lint": cmd_lint, "bench": cmd_bench}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
