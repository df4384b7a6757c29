"""Background processes that outlive the command that started them, and stopping them.

``make demo`` leaves the local AWS, the gateway and the poller running so that a person
can call the API afterwards; ``make stop`` must end exactly those and nothing else. Each
process started here gets a pid file in the run folder holding its pid and command line;
:func:`stop_all` signals a pid only if the process with that pid still runs the recorded
command, so a pid reused by an unrelated process after a reboot is never killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PID_SUFFIX = ".pid.json"


@dataclass(frozen=True)
class Started:
    name: str
    pid: int
    log: Path


def _cmdline(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _exec_cmdline(process: subprocess.Popen[bytes], argv: list[str]) -> list[str]:
    """The command line /proc shows once exec has finished: ``argv``, or, for a script
    started through its shebang, the interpreter and the script's path before the rest of
    ``argv``. Recording what /proc shows is what lets :func:`is_running` recognise it."""
    deadline = time.monotonic() + 5
    while process.poll() is None and time.monotonic() < deadline:
        seen = _cmdline(process.pid)
        if seen and seen[len(seen) - len(argv) + 1 :] == argv[1:] and len(seen) >= len(argv):
            return seen
        time.sleep(0.01)
    return argv


def start_detached(
    name: str, argv: list[str], run_dir: Path, env: dict[str, str] | None = None
) -> Started:
    """Start ``argv`` in its own session, output to ``run_dir/<name>.log``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    log = run_dir / f"{name}.log"
    with log.open("ab") as output:
        process = subprocess.Popen(
            argv,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    record = {"pid": process.pid, "argv": _exec_cmdline(process, argv)}
    (run_dir / f"{name}{PID_SUFFIX}").write_text(json.dumps(record))
    return Started(name, process.pid, log)


def is_running(run_dir: Path, name: str) -> bool:
    path = run_dir / f"{name}{PID_SUFFIX}"
    if not path.exists():
        return False
    record = json.loads(path.read_text())
    return bool(_cmdline(int(record["pid"])) == record["argv"])


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not _cmdline(pid):  # gone, or a zombie waiting for its parent
            return True
        time.sleep(0.1)
    return False


def stop_all(
    run_dir: Path, names: Iterable[str] | None = None, timeout_s: float = 10.0
) -> list[str]:
    """SIGTERM (then SIGKILL) every recorded process (or those in ``names``) still running
    its recorded command; return the names of those stopped."""
    wanted = None if names is None else set(names)
    stopped = []
    for path in sorted(run_dir.glob(f"*{PID_SUFFIX}")):
        name = path.name.removesuffix(PID_SUFFIX)
        if wanted is not None and name not in wanted:
            continue
        record = json.loads(path.read_text())
        pid = int(record["pid"])
        if _cmdline(pid) == record["argv"]:
            os.kill(pid, signal.SIGTERM)
            if not _wait_gone(pid, timeout_s):
                os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, timeout_s)
            stopped.append(name)
        path.unlink()
    return stopped
