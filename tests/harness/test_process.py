"""The one child-process lifecycle: named waits, informative failures, cleanup."""

from __future__ import annotations

import sys

import pytest

from akidb.harness.process import (
    AllOf,
    FileExists,
    LogLine,
    ManagedProcess,
    PortOpen,
    ProcessError,
    free_port,
    process_start_time,
    stop_group,
)


def _python(tmp_path, code: str, name: str = "child") -> ManagedProcess:
    return ManagedProcess(name, [sys.executable, "-u", "-c", code], tmp_path / f"{name}.log")


def test_waits_by_log_line_and_file_and_cleans_up(tmp_path):
    marker = tmp_path / "ready.txt"
    proc = _python(tmp_path, f"import time, pathlib; print('warming up'); "
                             f"pathlib.Path({str(marker)!r}).write_text('ok'); print('READY 42');"
                             f" time.sleep(60)")
    proc.start()
    proc.wait(AllOf([LogLine(proc.log_path, r"READY \d+"),
                     FileExists(marker, lambda text: text == "ok")]), 20)
    assert proc.is_running() and process_start_time(proc.pid) == proc.start_time
    assert proc.stop(grace=5) is not None and not proc.is_running()
    assert "warming up" in proc.log_tail()


def test_a_timeout_names_the_strategy_and_shows_the_log(tmp_path):
    proc = _python(tmp_path, "import time; print('still loading the model'); time.sleep(60)")
    proc.start()
    port = free_port()
    with pytest.raises(ProcessError) as info:
        proc.wait(PortOpen("127.0.0.1", lambda: port), 0.5, hint="is the port right?")
    text = str(info.value)
    assert f"port 127.0.0.1:{port} open" in text and "is the port right?" in text
    assert "still loading the model" in text and "not ready within 0.5s" in text
    proc.kill()


def test_an_early_exit_is_reported_with_its_code(tmp_path):
    proc = _python(tmp_path, "import sys; print('bad config'); sys.exit(3)")
    proc.start()
    with pytest.raises(ProcessError, match="exited with code 3 before it was ready"):
        proc.wait(FileExists(tmp_path / "never"), 20)
    assert "bad config" in proc.log_tail()


def test_run_kills_the_group_on_timeout_and_unknown_programs_fail_clearly(tmp_path):
    proc = _python(tmp_path, "import time; time.sleep(60)")
    assert proc.run(timeout=0.5) is None and not proc.is_running()
    assert _python(tmp_path, "import sys; sys.exit(0)", "ok").run(timeout=30) == 0
    missing = ManagedProcess("nope", [str(tmp_path / "no-such-binary")], tmp_path / "n.log")
    with pytest.raises(ProcessError, match="cannot run"):
        missing.start()


def test_stop_group_leaves_a_reused_pid_alone(tmp_path):
    proc = _python(tmp_path, "import time; time.sleep(60)")
    proc.start()
    assert not stop_group(proc.pid, (proc.start_time or 0) + 1, grace=1)  # not ours
    assert proc.is_running()
    assert stop_group(proc.pid, proc.start_time, grace=5)
    proc.process.wait(10)
    assert not proc.is_running()
