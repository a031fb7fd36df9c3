"""The capability matrix: what a workload can reach from inside each runtime.

The ``probe`` workload (modules/probe) tries, on its first request, what a sandbox should
decide about: being root, reading /etc/passwd and /etc/shadow, its own environment, its
parent's environment and memory (/proc/<ppid>/environ, /proc/<ppid>/mem), listing ``/``,
connecting to the Docker socket, the network, writing to every writable-looking mount (/tmp,
/dev/shm, /dev/mqueue, /) and leaving a file behind. It answers one line per capability:
``<key>=allowed (<detail>)`` or ``<key>=denied (<why>: ERRNO)`` with the real errno. The same C
source runs in every runtime, so the matrix compares the sandboxes, not the code.

``file_left`` is decided here, not by the probe: the probe says where it left a file named
with a fresh token, and once the instance is gone (process reaped, container removed) the
lab looks for that path on the host. Still there: allowed (and the lab removes it).

``root`` of the subprocess runtime also says when the workload runs as the lab's own user:
a lab that is not root cannot drop privileges, and native workloads then have its rights.

Network: the lab listens on a TCP port on the host's own non-loopback address and asks the
probe to connect there (a loopback target would only reach a container's private ``lo``). The
probe counts a connection, a refusal (some network stack answered) or a connect still pending
after 500 ms (a route exists) as allowed; a failing socket() or any other connect error
(ENETUNREACH, EACCES, ...) as denied.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
from collections.abc import Iterable

from edgelab.errors import EdgelabError
from edgelab.session import Session

CAPABILITIES = (
    "root",
    "read_file",
    "read_shadow",
    "read_env",
    "parent_env",
    "parent_mem",
    "list_root",
    "docker_socket",
    "network",
    "write_tmp",
    "write_dev_shm",
    "write_dev_mqueue",
    "write_root",
    "file_left",
)
VERDICTS = ("allowed", "denied")
PROBE_WORKLOAD = "probe"


def _host_address() -> str:
    """The host's IPv4 address on its default route, else any non-loopback one, else loopback."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.connect(("192.0.2.1", 9))  # UDP connect sends nothing: it only picks a route
        address = udp.getsockname()[0]
        if not address.startswith("127."):
            return str(address)
    with contextlib.suppress(Exception):
        import psutil

        for addresses in psutil.net_if_addrs().values():
            for entry in addresses:
                if entry.family == socket.AF_INET and not entry.address.startswith("127."):
                    return str(entry.address)
    return "127.0.0.1"


def parse_probe_answer(body: bytes) -> dict[str, tuple[str, str]]:
    """``key=verdict (detail)`` lines -> {key: (verdict, detail)}; unknown lines are ignored."""
    found: dict[str, tuple[str, str]] = {}
    for line in body.decode("utf-8", "replace").splitlines():
        key, sep, rest = line.partition("=")
        if not sep or key not in CAPABILITIES:
            continue
        verdict, _, detail = rest.partition(" ")
        found[key] = (verdict, detail.strip().removeprefix("(").removesuffix(")"))
    return found


def _judge_left_file(verdict: str, detail: str) -> tuple[str, str]:
    """The probe's file_left line, judged after the instance is gone: is the file on the host?"""
    if verdict != "allowed" or not detail.startswith("left /"):
        return verdict, detail
    path = detail.removeprefix("left ")
    if os.path.lexists(path):
        with contextlib.suppress(OSError):
            os.unlink(path)
        return "allowed", f"{path} was still on the host after the instance ended (the lab removed it)"
    return "denied", f"wrote {path} inside the instance; it went with the instance"


def _judge_root(runtime: str, verdict: str, detail: str, lab_uid: int | None = None) -> tuple[str, str]:
    """A native workload running as the lab's own user says so: it has the user's rights.
    ``runtime`` is a family (every subprocess rung runs native processes) or a rung name."""
    lab_uid = os.getuid() if lab_uid is None else lab_uid
    found = re.match(r"uid (\d+)", detail)
    if runtime.partition(":")[0] == "subprocess" and found and int(found.group(1)) == lab_uid and lab_uid != 0:
        return verdict, f"{detail}: the lab's own user, so native workloads have its rights"
    return verdict, detail


def probe_report(
    runtimes: Iterable[str] | None = None,
) -> dict[str, dict[str, tuple[str, str]]]:
    """Per runtime, per capability: (verdict, detail). The verdict is "allowed" or "denied";
    when the runtime could not run the probe it is "error" and the detail says why. Default:
    the registry's default rungs; any registered rung may be named."""
    from edgelab.runtimes import create_runtime, registry
    from edgelab.workloads import get_workload

    workload = get_workload(PROBE_WORKLOAD)
    report: dict[str, dict[str, tuple[str, str]]] = {}
    runtimes = registry.default_names() if runtimes is None else tuple(runtimes)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("0.0.0.0", 0))  # noqa: S104 - the probe must be able to reach it
        listener.listen(16)
        target = f"connect={_host_address()}:{listener.getsockname()[1]}"
        session = Session()
        for name in runtimes:
            runtime = None
            try:
                runtime = create_runtime(name, session)
                runtime.check()
                runtime.prepare(workload)
                request = f"{target} left={secrets.token_hex(8)}".encode()
                launch = runtime.launch(workload, request, workload.timeout_s)
                launch.instance.stop()  # reaped or removed: what it left is what stays
                response = launch.response
                if response.status != 0:
                    raise EdgelabError(f"probe answered status {response.status}: {response.reason()}")
                answer = parse_probe_answer(response.body)
                if "file_left" in answer:
                    answer["file_left"] = _judge_left_file(*answer["file_left"])
                if "root" in answer:
                    answer["root"] = _judge_root(registry.family_of(name), *answer["root"])
                report[name] = {
                    cap: answer.get(cap, ("error", "the probe did not report it")) for cap in CAPABILITIES
                }
            except EdgelabError as exc:
                reason = getattr(exc, "reason", None) or str(exc)
                report[name] = {cap: ("error", reason) for cap in CAPABILITIES}
            finally:
                if runtime is not None:
                    with contextlib.suppress(Exception):
                        runtime.close()
    return report


def probe_matrix(
    runtimes: Iterable[str] | None = None,
) -> dict[str, dict[str, str]]:
    """Per runtime, per capability: "allowed", "denied", or "error: <why the probe could not run>"."""
    return {
        runtime: {
            cap: verdict if verdict in VERDICTS else f"error: {detail}"
            for cap, (verdict, detail) in caps.items()
        }
        for runtime, caps in probe_report(runtimes).items()
    }
