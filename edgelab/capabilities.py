"""The capability matrix: what a workload can reach from inside each runtime.

The ``probe`` workload (modules/probe) tries, on its first request, to read a host file
(/etc/passwd), read its environment, list ``/``, open a TCP connection and write a file in
/tmp, and answers one line per capability: ``<key>=allowed (<detail>)`` or
``<key>=denied (<why>)``. The same C source runs in every runtime, so the matrix compares the
sandboxes, not the code. By design the answers differ across runtimes.

Network: the lab listens on a TCP port on the host's own non-loopback address and asks the
probe to connect there (a loopback target would only reach a container's private ``lo``). The
probe counts a connection, a refusal (some network stack answered) or a connect still pending
after 500 ms (a route exists) as allowed; a failing socket() or any other connect error
(ENETUNREACH, EACCES, ...) as denied.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable

from edgelab.errors import EdgelabError
from edgelab.session import Session

CAPABILITIES = ("read_file", "read_env", "list_root", "network", "write_file")
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


def probe_report(
    runtimes: Iterable[str] = ("container", "subprocess", "wasm"),
) -> dict[str, dict[str, tuple[str, str]]]:
    """Per runtime, per capability: (verdict, detail). The verdict is "allowed" or "denied";
    when the runtime could not run the probe it is "error" and the detail says why."""
    from edgelab.runtimes import create_runtime
    from edgelab.workloads import get_workload

    workload = get_workload(PROBE_WORKLOAD)
    report: dict[str, dict[str, tuple[str, str]]] = {}
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("0.0.0.0", 0))  # noqa: S104 - the probe must be able to reach it
        listener.listen(16)
        request = f"connect={_host_address()}:{listener.getsockname()[1]}".encode()
        session = Session()
        for name in runtimes:
            runtime = None
            try:
                runtime = create_runtime(name, session)
                runtime.check()
                runtime.prepare(workload)
                launch = runtime.launch(workload, request, workload.timeout_s)
                launch.instance.stop()
                response = launch.response
                if response.status != 0:
                    raise EdgelabError(f"probe answered status {response.status}: {response.reason()}")
                answer = parse_probe_answer(response.body)
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
    runtimes: Iterable[str] = ("container", "subprocess", "wasm"),
) -> dict[str, dict[str, str]]:
    """Per runtime, per capability: "allowed", "denied", or "error: <why the probe could not run>"."""
    return {
        runtime: {
            cap: verdict if verdict in VERDICTS else f"error: {detail}"
            for cap, (verdict, detail) in caps.items()
        }
        for runtime, caps in probe_report(runtimes).items()
    }
