"""Errors that reach a person as one line.

Every error the lab expects carries a message fit to print as is; the CLI turns an
``EdgelabError`` into that line and a non-zero exit, never a traceback.
"""

from __future__ import annotations


class EdgelabError(Exception):
    """An expected failure with a one-line message for the person at the terminal."""

    exit_code = 1


class UsageError(EdgelabError):
    """Bad input on the command line: unknown workload or runtime, bad count."""

    exit_code = 2


class ManifestError(EdgelabError):
    """A workload manifest that cannot be read or is missing a field."""

    exit_code = 2


class ArtifactError(EdgelabError):
    """An artifact (wasm module, native binary, image) is missing, corrupt or failed to build."""


class RuntimeUnavailable(EdgelabError):
    """A runtime cannot run here; ``fix`` says what a person can do about it."""

    def __init__(self, runtime: str, reason: str, fix: str = "") -> None:
        self.runtime = runtime
        self.reason = reason
        self.fix = fix
        super().__init__(f"{runtime}: {reason}" + (f" (fix: {fix})" if fix else ""))


class LaunchFailed(EdgelabError):
    """One launch of one instance failed; the run records it and carries on."""


class LaunchTimeout(LaunchFailed):
    """A launch or request did not answer within its timeout."""


class RequestRejected(EdgelabError):
    """The workload answered with a rejection (status 1): the request is invalid for it."""


class LimitReached(LaunchFailed):
    """A launch failed because the machine or the runtime ran out of something (mappings,
    pids, memory, the engine, a full Wasm pool). A ramp stops there instead of retrying, and
    reports ``limit`` (one line naming it) with the instances it reached."""

    def __init__(self, limit: str, reached: int | None = None) -> None:
        self.limit = limit
        self.reached = reached
        super().__init__(limit if reached is None else f"{limit} (after {reached:,} instances)")
