"""The native subprocess family: the static binary spawned per instance (``runtime``), the
same source linked dynamically against the system libc (``dynamic``), and a resident fork
server that forks an instance per launch (``forkserver``). ``edgelab.runtimes.subprocess``
keeps the names it had as one module."""

from edgelab.runtimes.subprocess.runtime import (
    EXIT_GRACE_S,
    GROUP_REAP_S,
    PHASES_IN_PROCESS,
    PHASES_OTHERWISE,
    ResponseTooLarge,
    SubprocessInstance,
    SubprocessRuntime,
    describe_wait_status,
    format_cap,
    read_exact,
    write_all,
)

__all__ = [
    "EXIT_GRACE_S",
    "GROUP_REAP_S",
    "PHASES_IN_PROCESS",
    "PHASES_OTHERWISE",
    "ResponseTooLarge",
    "SubprocessInstance",
    "SubprocessRuntime",
    "describe_wait_status",
    "format_cap",
    "read_exact",
    "write_all",
]
