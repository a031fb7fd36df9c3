"""The one host-process client of the Wasm and isolate runtimes: what each says when its host
dies under a call, cannot be started, or is closed. Real child processes (a stand-in host
module that reads the call, writes its last words and aborts), no engine needed."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from edgelab.errors import LaunchFailed, LimitReached, RuntimeUnavailable
from edgelab.runtimes import hostproc
from edgelab.runtimes.isolate.runtime import IsolateHost
from edgelab.runtimes.wasm.runtime import HostProcess

#: What V8 prints when a process runs out of its tables: the fatal line, then a stack trace.
_V8_DEATH = (
    "warming up\n"
    "\n"
    "#\n"
    "# Fatal process out of memory: ExternalEntityTable::InitializeTable\n"
    "#\n"
    "==== C stack trace ===============================\n"
    "    /lib/libv8.so(+0x1234) [0x7f00]\n"
)

_DYING_HOST = """\
import os, sys
sys.stdin.buffer.read(4)  # the call's length prefix: the call is on its way, then we die
sys.stderr.write(os.environ["DYING_HOST_STDERR"])
sys.stderr.flush()
os.abort()
"""


@pytest.fixture
def dying_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "edgelab_dying_host.py").write_text(_DYING_HOST)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    monkeypatch.setenv("DYING_HOST_STDERR", _V8_DEATH)
    return "edgelab_dying_host"


def test_an_isolate_host_that_dies_of_v8s_tables_is_a_limit_named_by_v8s_fatal_line(
    dying_host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(IsolateHost, "host_module", dying_host)
    host = IsolateHost()
    try:
        with pytest.raises(LimitReached) as caught:
            host.call(10, "ping")
        assert str(caught.value) == (
            "isolate host process exited (signal 6): "
            "Fatal process out of memory: ExternalEntityTable::InitializeTable"
        )
        assert not host.alive
        with pytest.raises(LaunchFailed, match=r"^isolate host process exited \(signal 6\): Fatal"):
            host.call(10, "ping")  # the line is kept
    finally:
        host.close()
    assert host.process.returncode == -6
    assert host.exit_message.startswith("isolate host process exited")


def test_a_wasm_host_that_dies_names_the_signal_and_its_last_stderr_line(
    dying_host: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(HostProcess, "host_module", dying_host)
    host = HostProcess("ondemand")
    try:
        with pytest.raises(LaunchFailed) as caught:
            host.call(10, "ping")
        assert type(caught.value) is LaunchFailed
        assert str(caught.value) == "wasm host process exited (signal 6, SIGABRT): /lib/libv8.so(+0x1234) [0x7f00]"
    finally:
        host.close()
    assert host.process.returncode == -6


def test_a_long_last_line_is_cut_to_200_characters(dying_host: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(HostProcess, "host_module", dying_host)
    monkeypatch.setenv("DYING_HOST_STDERR", "x" * 5000 + "\n  \n")
    host = HostProcess()
    try:
        with pytest.raises(LaunchFailed, match=r"\(signal 6, SIGABRT\): x{200}$"):
            host.call(10, "ping")
    finally:
        host.close()


def _refuse(code: int) -> Callable[..., subprocess.Popen[bytes]]:
    def popen(*_args: object, **_kwargs: object) -> subprocess.Popen[bytes]:
        raise OSError(code, "refused")

    return popen


@pytest.mark.parametrize("host_class", [HostProcess, IsolateHost])
def test_a_host_that_cannot_be_started_is_a_limit_only_when_the_machine_is_out_of_room(
    host_class: type[hostproc.HostClient], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No fork or no memory (EAGAIN, ENOMEM, no fds) stops a ramp at a limit; anything else
    (no interpreter to run) says the runtime cannot run here."""
    label = host_class.label
    for code in (errno.EAGAIN, errno.ENOMEM, errno.EMFILE, errno.ENFILE):
        monkeypatch.setattr(hostproc.subprocess, "Popen", _refuse(code))
        with pytest.raises(LimitReached) as limit:
            host_class()
        assert str(limit.value) == f"cannot start another {label}: [Errno {code}] refused"
    for code in (errno.ENOENT, errno.EACCES):
        monkeypatch.setattr(hostproc.subprocess, "Popen", _refuse(code))
        with pytest.raises(RuntimeUnavailable) as unavailable:
            host_class()
        assert unavailable.value.runtime == host_class.runtime
        assert unavailable.value.reason == f"cannot start the {label}: [Errno {code}] refused"


def test_a_closed_host_is_reaped_and_a_later_call_says_so() -> None:
    host = IsolateHost()
    try:
        assert host.call(60, "ping")["v8"]
    finally:
        host.close()
    assert host.process.returncode is not None
    assert not host.alive
    with pytest.raises(LaunchFailed, match="^isolate host process was closed$"):
        host.call(10, "ping")
