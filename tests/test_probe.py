"""The capability matrix on the real runtimes: what the same probe source can reach in each.

Wasm (no imports) can do nothing; the container (read-only FROM-scratch rootfs, network none)
can neither reach the network nor write; the native process, when the lab is root, runs as a
uid of its own in a jail that holds only its binary: no host file, no /proc of its parent, no
Docker socket, nowhere to write. Every denial names the real errno.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from edgelab.capabilities import (
    CAPABILITIES,
    _judge_left_file,
    _judge_root,
    parse_probe_answer,
    probe_report,
)
from edgelab.protocol import Response, decode_response_header, encode_request
from edgelab.runtimes import isolation
from edgelab.workloads import get_workload

ERRNO = re.compile(r": E[A-Z]+$")
#: Denials whose reason is not an errno, by their detail.
NOT_ERRNO = re.compile(r"^(the environment is empty|uid \d+, gid \d+.*)$")
IS_ROOT = os.geteuid() == 0

Report = dict[str, dict[str, tuple[str, str]]]


@pytest.fixture(scope="module")
def report(docker_client: Any) -> Report:
    return probe_report()


def _verdicts(report: Report, runtime: str) -> dict[str, str]:
    return {cap: verdict for cap, (verdict, _) in report[runtime].items()}


def test_every_runtime_reports_every_capability(report: Report) -> None:
    for runtime, caps in report.items():
        assert tuple(caps) == CAPABILITIES, runtime
        assert {verdict for verdict, _ in caps.values()} <= {"allowed", "denied"}, (runtime, caps)


def test_every_denial_names_its_real_errno(report: Report) -> None:
    for runtime in ("container", "subprocess"):
        for cap, (verdict, detail) in report[runtime].items():
            if verdict == "denied" and not NOT_ERRNO.match(detail):
                assert ERRNO.search(detail), f"{runtime} {cap}: {detail!r} names no errno"


def test_wasm_is_denied_everything(report: Report) -> None:
    assert report["wasm"] == {cap: ("denied", "no import") for cap in CAPABILITIES}


def test_container_denies_network_writes_and_host(report: Report) -> None:
    caps = report["container"]
    for cap in ("network", "read_file", "read_shadow", "docker_socket", "parent_env", "parent_mem",
                "write_root", "file_left"):  # fmt: skip
        assert caps[cap][0] == "denied", (cap, caps[cap])
    assert caps["write_root"][1].endswith("EROFS"), caps["write_root"]  # the read-only root, not ENOENT


@pytest.mark.skipif(not IS_ROOT, reason="the lab is not root: native workloads have the user's rights")
def test_subprocess_of_a_root_lab_is_boxed_in(report: Report) -> None:
    caps = report["subprocess"]
    verdict, detail = caps["root"]
    uid = int(re.match(r"uid (\d+)", detail).group(1))  # type: ignore[union-attr]
    assert verdict == "denied" and uid >= isolation.NATIVE_UID_BASE, detail
    denied = {cap for cap, (v, _) in caps.items() if v == "denied"}
    assert denied >= {
        "read_file", "read_shadow", "read_env", "parent_env", "parent_mem", "docker_socket",
        "write_tmp", "write_dev_shm", "write_dev_mqueue", "write_root", "file_left", "list_root",
    }, caps  # fmt: skip


@pytest.mark.skipif(IS_ROOT, reason="the lab is root: see test_subprocess_of_a_root_lab_is_boxed_in")
def test_subprocess_of_a_user_lab_says_it_has_the_users_rights(report: Report) -> None:
    verdict, detail = report["subprocess"]["root"]
    assert verdict == "denied" and "the lab's own user" in detail, detail


def _probe_directly(program: str, argv: list[str], request: bytes) -> dict[str, tuple[str, str]]:
    """Spawn ``argv`` with an empty environment, send one request, parse the probe's answer."""
    done = subprocess.run(
        argv, executable=program, input=encode_request(request), capture_output=True, env={}, timeout=30
    )
    length, status = decode_response_header(done.stdout[:5])
    response = Response(status, done.stdout[5 : 5 + length])
    assert response.status == 0, response
    return parse_probe_answer(response.body)


@pytest.mark.skipif(not IS_ROOT, reason="the lab is not root: there is no uid to drop")
def test_the_uid_drop_alone_denies_the_labs_secrets_with_eacces() -> None:
    """Without the jail, the dropped uid alone keeps /etc/shadow, the parent's /proc files
    and the Docker socket out of reach: the jail is a second layer, not the only one."""
    mode = isolation.detect()
    assert mode.launcher is not None and mode.drop_uid, mode
    from edgelab.build import ensure_native

    binary = ensure_native(get_workload("probe"))
    scratch = Path(tempfile.mkdtemp(prefix="edgelab-probe-uid-"))
    try:
        scratch.chmod(0o755)
        exe = scratch / binary.name
        shutil.copy2(binary, exe)
        argv = [mode.launcher.name, "-", str(isolation.NATIVE_UID_BASE), "-", "-", str(exe), "probe"]
        caps = _probe_directly(str(mode.launcher), argv, b"left=uidonly")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    assert caps["root"][0] == "denied"
    for cap in ("read_shadow", "parent_env", "parent_mem"):
        assert caps[cap][0] == "denied" and caps[cap][1].endswith("EACCES"), (cap, caps[cap])
    if os.path.exists("/var/run/docker.sock"):
        assert caps["docker_socket"] == ("denied", "connect /var/run/docker.sock: EACCES")
    for left in Path("/tmp").glob("edgelab-left-uidonly"):  # /tmp is writable without the jail
        left.unlink()


def test_a_file_left_on_the_host_is_found_after_exit() -> None:
    """The lab-side half of file_left: an unboxed native process leaves a file in /tmp, the
    lab finds it after the process is gone, reports it and removes it."""
    from edgelab.build import ensure_native

    binary = ensure_native(get_workload("probe"))
    caps = _probe_directly(str(binary), ["probe"], b"left=hostcheck1")
    assert caps["file_left"] == ("allowed", "left /tmp/edgelab-left-hostcheck1")
    verdict, detail = _judge_left_file(*caps["file_left"])
    assert (verdict, detail.split()[0]) == ("allowed", "/tmp/edgelab-left-hostcheck1")
    assert not os.path.exists("/tmp/edgelab-left-hostcheck1")
    assert _judge_left_file("allowed", "left /tmp/edgelab-left-neverwritten")[0] == "denied"


def test_a_user_lab_says_plainly_that_native_workloads_have_its_rights(monkeypatch: pytest.MonkeyPatch) -> None:
    """The words doctor and the probe use when the lab is not root (simulated: uid 1000)."""
    assert _judge_root("subprocess", "denied", "uid 1000, gid 1000", lab_uid=1000) == (
        "denied",
        "uid 1000, gid 1000: the lab's own user, so native workloads have its rights",
    )
    assert _judge_root("container", "denied", "uid 1000, gid 1000", lab_uid=1000)[1] == "uid 1000, gid 1000"
    monkeypatch.setattr(isolation.os, "geteuid", lambda: 1000)
    mode = isolation.detect.__wrapped__()  # type: ignore[attr-defined]
    assert not mode.drop_uid
    assert mode.privileges == "the user's own rights (uid 1000): the lab is not root, so it cannot drop them"


def test_parse_probe_answer() -> None:
    body = b"read_file=denied (no import)\nnetwork=allowed (connected)\nnoise\n"
    assert parse_probe_answer(body) == {
        "read_file": ("denied", "no import"),
        "network": ("allowed", "connected"),
    }


def test_probe_command_json() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edgelab", "probe", "--json", "--runtimes", "wasm,subprocess"],
        capture_output=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr.decode()
    data = json.loads(done.stdout)
    assert set(data) == {"wasm", "subprocess"}
    assert all(data["wasm"][cap] == {"verdict": "denied", "detail": "no import"} for cap in CAPABILITIES)
    assert data["subprocess"]["write_tmp"]["verdict"] == ("denied" if IS_ROOT else "allowed")
    assert not [p for p in os.listdir("/tmp") if p.startswith(("edgelab-probe-", "edgelab-left-"))]


def _rungs_with_a_variant() -> list[str]:
    from edgelab.runtimes import registry

    return [name for name in registry.names() if ":" in name]


@pytest.fixture(scope="module")
def rung_report(docker_client: Any) -> Report:
    """Every registered rung with a variant, probed; a rung unusable here reports "error"."""
    return probe_report(_rungs_with_a_variant())


#: Differences from the family's plain rung that are known, with why they are no way out. Each
#: must still hold (a fixed one fails the test until its entry goes).
KNOWN_OPENINGS: dict[tuple[str, str], str] = {
    # (container:gvisor, write_tmp) stood here while runsc gave the sandbox a writable /tmp of
    # its own; the rung now mounts a read-only tmpfs there, as runc's read-only root refuses.
}


def test_a_rung_never_opens_what_its_family_closes(report: Report, rung_report: Report) -> None:
    """Every variant (container:gvisor, subprocess:forkserver, wasm:jit ...) is at least as boxed
    in as its family's plain rung: a way of starting faster must not be a way out. A rung that
    cannot run here says why in one line instead."""
    from edgelab.runtimes import registry

    checked = 0
    for rung, caps in rung_report.items():
        assert tuple(caps) == CAPABILITIES, rung
        if {verdict for verdict, _ in caps.values()} == {"error"}:
            reason = caps["root"][1]
            assert reason and "\n" not in reason and "Traceback" not in reason, (rung, reason)
            continue
        family = registry.family_of(rung)
        if family not in report:
            continue  # a family with no plain rung in the default selection
        opened = {
            cap for cap, (verdict, _) in caps.items()
            if verdict == "allowed" and report[family][cap][0] == "denied"
        }  # fmt: skip
        known = {cap for (name, cap) in KNOWN_OPENINGS if name == rung}
        for cap in opened & known:
            still_denied = KNOWN_OPENINGS[(rung, cap)]
            assert caps[still_denied][0] == "denied", (rung, cap, caps[still_denied])
        assert opened == (opened & known), f"{rung} allows what {family} denies: {sorted(opened - known)} ({caps})"
        assert known <= opened, f"{rung}: {sorted(known - opened)} no longer differ: drop them from KNOWN_OPENINGS"
        checked += 1
    if not _rungs_with_a_variant():
        pytest.skip("no rung with a variant registered")
    assert checked or rung_report, rung_report


def test_probe_covers_a_granted_and_an_ungranted_directory_and_variable_for_your_own_module() -> None:
    """``edgelab probe`` on a Wasm rung also runs a WASI module with one directory and one
    variable granted (as ``--dir``/``--env`` grant them) beside ones it was not given."""
    done = subprocess.run(
        [sys.executable, "-m", "edgelab", "probe", "-r", "wasm", "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    grants = json.loads(done.stdout)["wasm"]
    verdicts = {cap.split(" (")[0]: row["verdict"] for cap, row in grants.items() if cap.startswith("wasi: ")}
    assert verdicts == {
        "wasi: granted dir": "allowed",
        "wasi: ungranted dir": "denied",
        "wasi: ungranted preopen": "denied",
        "wasi: granted env": "allowed",
        "wasi: ungranted env": "denied",
    }, grants
