"""Background processes: stop_all ends what was started here and nothing else."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from learnrec_dev.local.processes import PID_SUFFIX, is_running, start_detached, stop_all

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def test_stop_all_ends_the_recorded_process(tmp_path: Path) -> None:
    started = start_detached("sleeper", SLEEPER, tmp_path)
    assert is_running(tmp_path, "sleeper")
    assert stop_all(tmp_path) == ["sleeper"]
    assert not is_running(tmp_path, "sleeper")
    assert not list(tmp_path.glob(f"*{PID_SUFFIX}"))
    assert started.log.exists()


def test_a_reused_pid_running_something_else_is_left_alone(tmp_path: Path) -> None:
    other = subprocess.Popen(SLEEPER)
    try:
        # A stale pid file whose pid now belongs to a process with another command line.
        record = {"pid": other.pid, "argv": ["moto_server", "-p", "4566"]}
        (tmp_path / f"moto{PID_SUFFIX}").write_text(json.dumps(record))
        assert stop_all(tmp_path) == []
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_stop_all_can_be_limited_to_named_processes(tmp_path: Path) -> None:
    start_detached("gateway", SLEEPER, tmp_path)
    start_detached("moto", SLEEPER, tmp_path)
    assert stop_all(tmp_path, names=["gateway"]) == ["gateway"]
    assert is_running(tmp_path, "moto") and not is_running(tmp_path, "gateway")
    assert stop_all(tmp_path) == ["moto"]


def test_a_script_started_through_its_shebang_is_recognised(tmp_path: Path) -> None:
    script = tmp_path / "serve"
    script.write_text(f"#!{sys.executable}\nimport time\ntime.sleep(60)\n")
    script.chmod(0o755)
    start_detached("server", [str(script), "--port", "1"], tmp_path)
    assert is_running(tmp_path, "server")
    assert stop_all(tmp_path) == ["server"]
