"""The isolate host process: every V8 isolate of a lab lives here, never in the lab or the UI.

Started by ``IsolateRuntime`` as ``python -m edgelab.runtimes.isolate.host``; it speaks
``edgelab.ipc`` on the pipes it was given as stdin and stdout (``Call`` in, ``Ok``/``Err``
out), so this process's PSS growth is the isolate memory figure, and V8 aborting (it does,
with "Fatal process out of memory", when a process holds too many isolates) ends this process
only. Everything is timed here, by ``perf_counter_ns`` around each mini-racer step, so the
pipe to the lab is excluded; each step is one mini-racer call, which hops from this thread to
the isolate's own thread and back (~0.15-0.25 ms here, part of every phase, as it is for any
user of mini-racer).

Two ways of starting an instance (``mode``):

- ``isolate``: a new ``MiniRacer`` (a new V8 isolate with its one context), the compile script
  (the module inlined as base64, decoded and compiled by ``new WebAssembly.Module``), a new
  ``WebAssembly.Instance`` + ``_initialize``, and the first request.
- ``context``: the same in an isolate made at ``load`` and kept warm, module compiled there
  once: a new ``WebAssembly.Instance`` + ``_initialize``, and the first request. mini-racer
  makes exactly one V8 context per isolate (``mr_init_context`` builds an isolate and its
  context together; no call makes a second, and ``ShadowRealm`` answers "Not supported"
  without an embedder hook), so this is no fresh *context*: instances share the warm
  isolate's global object and heap. The rung says so.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from edgelab.ipc import Call, Channel, ChannelClosed, Err, Ok
from edgelab.runtimes.isolate.glue import REFUSALS, script

MODES = ("isolate", "context")
#: V8's heap limit per isolate (mini-racer's hard limit: the running script is terminated past
#: it) on top of what the workload's largest request needs as a JS string (twice: the string
#: and its UTF-8 copy on the way in). Linear memory is not on V8's heap: it is bounded by the
#: module's memory maximum, lowered at load to the workload's memory limit (``cap_memory``).
HEAP_LIMIT_BASE_BYTES = 64 << 20
WASM_PAGE = 64 * 1024
#: How long a cancelled step may take to stop (V8 terminates a script within milliseconds).
CANCEL_WAIT_S = 5.0
#: Isolates whose heap statistics are read for one memory reading (see ``heap_stats``).
HEAP_SAMPLE = 50


class GuestError(Exception):
    """A launch or request failed inside the host; ``kind`` is "timeout", "failed" or "limit"."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Launched:
    """One launch as the host saw it: the instance's id (None if not kept or failed), the first
    response, its phases (ns, in the runtime's phase order) and the failure, if any."""

    instance_id: int | None
    status: int
    body: bytes
    phases_ns: dict[str, int] = field(default_factory=dict)
    startup_ns: int = 0
    error: tuple[str, str] | None = None


@dataclass(frozen=True)
class Answer:
    """One request to a resident instance."""

    status: int
    body: bytes
    elapsed_ns: int


def format_cap(n: int) -> str:
    """A byte cap as the other runtimes write it: "16 MiB", "64 KiB", "1,000 bytes"."""
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift and n % (1 << shift) == 0:
            return f"{n >> shift} {unit}"
    return f"{n:,} bytes"


# -- the module's memory maximum --------------------------------------------------------------
def _leb(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _uleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def cap_memory(wasm: bytes, limit_bytes: int) -> tuple[bytes, int]:
    """The module with its memory's maximum lowered to ``limit_bytes`` (whole pages), and that
    maximum in pages.

    wasmtime's store limiter refuses a ``memory.grow`` past the workload's memory limit; V8
    has no such hook, but a module's own maximum has the same effect (``memory.grow`` returns
    -1), so the same workload answers the same "out of memory" at the same size.
    """
    if wasm[:4] != b"\0asm":
        raise GuestError("failed", "not a WebAssembly module")
    at = 8
    while at < len(wasm):
        section = wasm[at]
        size, body = _leb(wasm, at + 1)
        end = body + size
        if section == 5:
            count, pos = _leb(wasm, body)
            if count != 1:
                raise GuestError("failed", f"module has {count} memories, the ABI has one")
            flags = wasm[pos]
            if flags not in (0, 1):
                raise GuestError("failed", f"module's memory has flags {flags} (shared or 64-bit)")
            minimum, pos = _leb(wasm, pos + 1)
            maximum = 65536
            if flags == 1:
                maximum, pos = _leb(wasm, pos)
            pages = max(minimum, min(maximum, limit_bytes // WASM_PAGE))
            content = _uleb(1) + b"\x01" + _uleb(minimum) + _uleb(pages) + wasm[pos:end]
            rebuilt = b"\x05" + _uleb(len(content)) + content
            return wasm[:at] + rebuilt + wasm[end:], pages
        at = end
    raise GuestError("failed", "module has no memory")


# -- isolates ------------------------------------------------------------------------------------
class Isolate:
    """One ``MiniRacer`` (one V8 isolate and its context) with the glue compiled in it."""

    __slots__ = ("_maker", "_loop", "racer", "handle", "drop", "instances")

    def __init__(self, loop: asyncio.AbstractEventLoop, heap_limit: int) -> None:
        from py_mini_racer import mini_racer

        self._loop = loop
        self._maker: Any = mini_racer(loop)
        self.racer = self._maker.__enter__()
        self.racer.set_hard_memory_limit(heap_limit)
        self.handle: Any = None
        self.drop: Any = None
        #: Instances alive in it (resident ones of ``context`` mode, or its one).
        self.instances = 0

    def run(self, step: Coroutine[Any, Any, Any], timeout_s: float) -> Any:
        """Run one mini-racer step (a coroutine on the shared loop) and wait for it here, at
        most ``timeout_s``; past that, cancel it (mini-racer then terminates the script, V8's
        TerminateExecution) and wait until it has, so the isolate is free to close.

        mini-racer's own ``timeout_sec`` wraps every step in ``asyncio.wait_for`` (a second
        task and a timer on the loop per call); waiting on the future with a timeout costs
        nothing on the loop, and a bare mini-racer loop without a timeout pays the same."""
        finished = threading.Event()

        async def guarded() -> Any:
            try:
                return await step
            finally:
                finished.set()  # after mini-racer's own finally has cancelled the V8 task

        future = asyncio.run_coroutine_threadsafe(guarded(), self._loop)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            finished.wait(CANCEL_WAIT_S)
            raise GuestError("timeout", "timed out") from None

    def close(self) -> None:
        maker, self._maker = self._maker, None
        if maker is not None:
            with contextlib.suppress(Exception):
                maker.__exit__(None, None, None)


@dataclass
class Loaded:
    """A workload as the host runs it."""

    name: str
    script: str
    heap_limit: int
    timeout_s: float
    cap: int
    warm: Isolate | None = None


def _failure(exc: BaseException, what: str) -> GuestError:
    """A mini-racer exception as one line the lab shows."""
    from py_mini_racer import JSEvalException, JSOOMException, JSTimeoutException

    if isinstance(exc, GuestError):
        return exc
    if isinstance(exc, JSTimeoutException):
        return GuestError("timeout", "timed out")
    if isinstance(exc, JSOOMException):
        return GuestError("failed", "out of memory (V8's heap limit for the isolate)")
    if isinstance(exc, JSEvalException):
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        # mini-racer's text: "<anonymous>:12: RuntimeError: unreachable", the source line,
        # a caret, then the stack; the first line names the error.
        first = lines[0].split(": ", 1)[-1] if lines else type(exc).__name__
        if first.startswith(("RuntimeError", "CompileError", "LinkError")):
            return GuestError("failed", f"trapped: {first}")
        return GuestError("failed", f"{what}: {first}")
    return GuestError("failed", f"{what}: {type(exc).__name__}: {exc}")


class Host:
    """Every isolate of this process, by instance id."""

    def __init__(self) -> None:
        from py_mini_racer import init_mini_racer

        # --single-threaded: no V8 worker threads (background compilation, GC helpers), so a
        # cold start's work is all on the isolate's own thread, where it is timed.
        init_mini_racer(flags=("--single-threaded",), ignore_duplicate_init=True)
        self.loop = asyncio.new_event_loop()
        # One event loop for every isolate (mini-racer would otherwise start a thread each).
        threading.Thread(target=self.loop.run_forever, name="mini-racer", daemon=True).start()
        self.modules: dict[str, Loaded] = {}
        #: instance id -> (isolate, id of the WebAssembly.Instance in it, its module)
        self.residents: dict[int, tuple[Isolate, int, Loaded]] = {}
        self._next_id = 0

    # -- commands ----------------------------------------------------------------------------
    def ping(self) -> dict[str, Any]:
        from importlib.metadata import version

        from py_mini_racer import MiniRacer

        racer = MiniRacer()
        try:
            v8 = racer.v8_version
        finally:
            racer.close()
        return {
            "pid": os.getpid(),
            "instances": len(self.residents),
            "v8": v8,
            "mini-racer": version("mini-racer"),
        }

    def load(
        self,
        name: str,
        wasm_path: str,
        memory_limit: int,
        max_request_bytes: int,
        timeout_s: float,
        max_response_bytes: int,
        warm: bool,
    ) -> dict[str, Any]:
        """Read and cap the module, and (``warm``) make the warm isolate it is compiled in."""
        started = time.perf_counter_ns()
        with open(wasm_path, "rb") as source:
            capped, pages = cap_memory(source.read(), memory_limit)
        loaded = Loaded(
            name,
            script(base64.b64encode(capped).decode("ascii"), max_response_bytes),
            HEAP_LIMIT_BASE_BYTES + 2 * max_request_bytes,
            timeout_s,
            max_response_bytes,
        )
        old = self.modules.get(name)
        if old is not None and old.warm is not None and not old.warm.instances:
            old.warm.close()
        self.modules[name] = loaded
        if warm:
            loaded.warm = self._isolate(loaded, timeout_s)
        return {
            "module_bytes": len(capped),
            "memory_max_bytes": pages * WASM_PAGE,
            "heap_limit_bytes": loaded.heap_limit,
            "load_ns": time.perf_counter_ns() - started,
        }

    def _isolate(self, module: Loaded, timeout_s: float) -> Isolate:
        """A new isolate with the workload's glue and module compiled in it."""
        isolate = Isolate(self.loop, module.heap_limit)
        try:
            isolate.handle = isolate.run(
                isolate.racer.eval_cancelable(module.script), timeout_s
            ).cancelable()
            isolate.drop = isolate.racer.eval("el_drop")
        except BaseException:
            isolate.close()
            raise
        return isolate

    def launch(
        self, name: str, request: bytes, keep: bool, timeout_s: float, mode: str
    ) -> Launched:
        module = self.modules.get(name)
        if module is None:
            return Launched(
                None, 2, b"", error=("failed", f"{name} is not loaded in the isolate host")
            )
        text = request.decode("latin-1")
        try:
            if mode == "context":
                return self._launch_context(module, text, keep, timeout_s)
            return self._launch_isolate(module, text, keep, timeout_s)
        except GuestError as exc:
            return Launched(None, 2, b"", error=(exc.kind, str(exc)))
        except MemoryError:
            return Launched(None, 2, b"", error=("limit", "isolate host out of memory"))

    def _launch_isolate(self, module: Loaded, text: str, keep: bool, timeout_s: float) -> Launched:
        t0 = time.perf_counter_ns()
        try:
            isolate = Isolate(self.loop, module.heap_limit)
        except Exception as exc:  # noqa: BLE001 - a failed isolate is this launch's failure
            raise GuestError("limit", f"cannot make another V8 isolate: {exc}") from None
        try:
            t1 = time.perf_counter_ns()
            try:
                isolate.handle = isolate.run(
                    isolate.racer.eval_cancelable(module.script), timeout_s
                ).cancelable()
            except Exception as exc:  # noqa: BLE001 - every mini-racer failure is one line
                raise _failure(exc, "compile") from None
            t2 = time.perf_counter_ns()
            local_id = self._instantiate(isolate, timeout_s)
            t3 = time.perf_counter_ns()
            status, body = self._handle(isolate, local_id, text, timeout_s, module.cap)
            t4 = time.perf_counter_ns()
        except BaseException:
            isolate.close()
            raise
        phases = {
            "isolate": t1 - t0,
            "compile": t2 - t1,
            "instantiate": t3 - t2,
            "first_response": t4 - t3,
        }
        if not keep:
            isolate.close()  # outside the timing, as a container's removal is
            return Launched(None, status, body, phases, t4 - t0)
        return Launched(self._keep(isolate, local_id, module), status, body, phases, t4 - t0)

    def _launch_context(self, module: Loaded, text: str, keep: bool, timeout_s: float) -> Launched:
        isolate = module.warm
        if isolate is None:
            # The warm isolate was lost to a runaway guest: make another, untimed (the next
            # launch is timed as every other one is).
            try:
                isolate = module.warm = self._isolate(module, module.timeout_s)
            except Exception as exc:  # noqa: BLE001
                raise _failure(exc, "warm isolate") from None
        t0 = time.perf_counter_ns()
        local_id = None
        try:
            local_id = self._instantiate(isolate, timeout_s)
            t1 = time.perf_counter_ns()
            status, body = self._handle(isolate, local_id, text, timeout_s, module.cap)
            t2 = time.perf_counter_ns()
        except GuestError as exc:
            if exc.kind == "timeout" or "heap limit" in str(exc):
                # Terminated mid-script: the isolate may hold a half-made instance. Start over.
                if local_id is not None:
                    isolate.instances -= 1
                self._lose_warm(module)
            elif local_id is not None:
                self._drop_in(isolate, local_id)  # a trapped instance must not stay in its Map
            raise
        phases = {"instantiate": t1 - t0, "first_response": t2 - t1}
        if not keep:
            self._drop_in(isolate, local_id)
            return Launched(None, status, body, phases, t2 - t0)
        return Launched(self._keep(isolate, local_id, module), status, body, phases, t2 - t0)

    def _lose_warm(self, module: Loaded) -> None:
        isolate, module.warm = module.warm, None
        if isolate is not None and not isolate.instances:
            isolate.close()
        # With residents in it the isolate stays until the last of them is dropped.

    def _instantiate(self, isolate: Isolate, timeout_s: float) -> int:
        try:
            local_id = int(isolate.run(isolate.racer.eval_cancelable("el_new()"), timeout_s))
        except Exception as exc:  # noqa: BLE001
            raise _failure(exc, "instantiate") from None
        isolate.instances += 1
        return local_id

    def _handle(
        self, isolate: Isolate, local_id: int, text: str, timeout_s: float, cap: int
    ) -> tuple[int, bytes]:
        try:
            raw = isolate.run(isolate.handle(local_id, text), timeout_s)
        except Exception as exc:  # noqa: BLE001
            raise _failure(exc, "request") from None
        if isinstance(raw, int):
            raise GuestError(
                "failed", REFUSALS.get(raw, f"glue refused ({raw})").format(cap=format_cap(cap))
            )
        data = bytes(raw)
        return data[0], data[1:]

    def _keep(self, isolate: Isolate, local_id: int, module: Loaded) -> int:
        self._next_id += 1
        self.residents[self._next_id] = (isolate, local_id, module)
        return self._next_id

    def _drop_in(self, isolate: Isolate, local_id: int) -> None:
        isolate.instances -= 1
        if isolate is not self._warm_of(isolate) and isolate.instances <= 0:
            isolate.close()
            return
        with contextlib.suppress(Exception):
            isolate.drop(local_id, timeout_sec=5)

    def _warm_of(self, isolate: Isolate) -> Isolate | None:
        for module in self.modules.values():
            if module.warm is isolate:
                return isolate
        return None

    def launch_batch(
        self, name: str, request: bytes, n: int, keep: bool, timeout_s: float, mode: str
    ) -> list[Launched]:
        """Up to ``n`` launches; stops after the first failure (it is last in the list)."""
        results = []
        for _ in range(n):
            result = self.launch(name, request, keep, timeout_s, mode)
            results.append(result)
            if result.error is not None:
                break
        return results

    def request(self, instance_id: int, payload: bytes, timeout_s: float) -> Answer:
        found = self.residents.get(instance_id)
        if found is None:
            raise GuestError("failed", f"isolate instance {instance_id} is not running")
        isolate, local_id, module = found
        started = time.perf_counter_ns()
        try:
            status, body = self._handle(
                isolate, local_id, payload.decode("latin-1"), timeout_s, module.cap
            )
        except GuestError as exc:
            self.drop([instance_id])
            if module.warm is isolate and exc.kind == "timeout":
                self._lose_warm(module)
            raise
        return Answer(status, body, time.perf_counter_ns() - started)

    def drop(self, ids: list[int]) -> int:
        dropped = 0
        for instance_id in ids:
            found = self.residents.pop(instance_id, None)
            if found is not None:
                self._drop_in(found[0], found[1])
                dropped += 1
        return dropped

    def drop_all(self) -> int:
        return self.drop(list(self.residents))

    def warm_instances(self) -> dict[str, int]:
        """Instances alive in each warm isolate, by workload (none but residents should be)."""
        found = {}
        for name, module in self.modules.items():
            if module.warm is not None:
                count = module.warm.racer.eval("el_instances.size")
                if isinstance(count, (int, float)) and count:
                    found[name] = int(count)
        return found

    def heap_stats(self, most: int = HEAP_SAMPLE) -> dict[str, int]:
        """V8's heap statistics summed over up to ``most`` distinct isolates holding residents,
        spread evenly over them (one mini-racer call each: reading every one of thousands at
        every point of a ramp would cost seconds), with how many were read."""
        distinct: dict[int, Isolate] = {}
        for isolate, _local, _module in self.residents.values():
            distinct.setdefault(id(isolate), isolate)
        isolates = list(distinct.values())
        step = max(1, -(-len(isolates) // most))
        sampled = isolates[::step]
        totals: dict[str, int] = {"isolates": len(isolates), "sampled": len(sampled)}
        totals["instances"] = len(self.residents)
        for isolate in sampled:
            for key, value in isolate.racer.heap_stats().items():
                if isinstance(value, int):
                    totals[key] = totals.get(key, 0) + value
        return totals


def serve(channel: Channel) -> None:
    host = Host()
    commands: dict[str, Callable[..., Any]] = {
        "ping": host.ping,
        "load": host.load,
        "launch": host.launch,
        "launch_batch": host.launch_batch,
        "request": host.request,
        "drop": host.drop,
        "drop_all": host.drop_all,
        "heap_stats": host.heap_stats,
        "warm_instances": host.warm_instances,
    }
    while True:
        try:
            message = channel.recv(None)
        except ChannelClosed:
            break
        if not isinstance(message, Call) or message.command == "exit":
            break
        try:
            reply: Any = Ok(commands[message.command](*message.args))
        except GuestError as exc:
            reply = Err(exc.kind, str(exc))
        except MemoryError:
            reply = Err("limit", "isolate host out of memory")
        except Exception as exc:  # noqa: BLE001 - one bad command must not end the host
            reply = Err(
                "failed",
                f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
            )
        try:
            channel.send(reply)
        except ChannelClosed:
            break
    host.drop_all()


def main() -> None:
    # The pipes are the protocol: keep stray prints (ours, mini-racer's, V8's) off them.
    in_fd = os.dup(0)
    out_fd = os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    sys.stdin = open(os.devnull)  # noqa: SIM115
    sys.stdout = sys.stderr
    argparse.ArgumentParser(prog="python -m edgelab.runtimes.isolate.host").parse_args()
    serve(Channel(in_fd, out_fd))
    os._exit(0)  # V8's threads and the event loop's are daemon work: nothing to flush


if __name__ == "__main__":
    # Run as the imported module, not as __main__: what it sends (Launched, Answer) must
    # unpickle in the lab as edgelab.runtimes.isolate.host's classes.
    from edgelab.runtimes.isolate import host as imported

    imported.main()
