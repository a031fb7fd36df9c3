"""Raw baseline for the isolate rungs: a bare mini-racer loop in this process, nothing of the lab.

``raw_cold_starts(rung, workload, n)`` (for benchmarks/ladder.py):

- ``isolate``: per iteration, timed: a new MiniRacer (a new V8 isolate and its context), one
  eval that decodes the module from a base64 literal and compiles it (``new
  WebAssembly.Module``), one eval making a ``WebAssembly.Instance`` + ``_initialize``, and one
  call that writes the request into linear memory, runs ``edgelab_handle`` and copies the
  response out as an ArrayBuffer (read as bytes here). Closing the isolate is outside the
  timing, as in the lab.
- ``isolate:context``: one isolate made and the module compiled in it once, untimed; per
  iteration, timed: the instance eval and the request call as above.

Its JavaScript is written here, independently of the lab's glue (edgelab/runtimes/isolate/
glue.py), so a slow glue would show as lab/raw > 1. It uses mini-racer's public API only,
with one event loop for every isolate as the lab's host does (``mini_racer(loop)``), and the
same V8 flag (``--single-threaded``). No IPC, no bookkeeping.

``python benchmarks/isolate_raw.py [-w hello] [-n 100]`` prints, for both rungs, the lab's p50
(``edgelab.lab.Lab``, a burst of that rung alone) against the raw loop's, and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import sys
import threading
import time
from functools import lru_cache
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

RUNGS = ("isolate", "isolate:context")

_COMPILE = "var m = new WebAssembly.Module(Uint8Array.fromBase64('%s'));\n"
_INSTANCE = "var i = new WebAssembly.Instance(m, {}); i.exports._initialize(); 0"
_HANDLE = r"""(function (s) {
  const e = i.exports, n = s.length, p = e.edgelab_alloc(n) >>> 0;
  if (p) { const b = new Uint8Array(e.memory.buffer, p, n); for (let k = 0; k < n; k++) b[k] = s.charCodeAt(k); }
  const r = BigInt.asUintN(64, e.edgelab_handle(p, n));
  const at = Number(r >> 32n), len = Number(r & 0xffffffffn);
  return e.memory.buffer.slice(at, at + len);
})"""


@lru_cache(maxsize=1)
def _loop() -> asyncio.AbstractEventLoop:
    from py_mini_racer import init_mini_racer

    init_mini_racer(flags=("--single-threaded",), ignore_duplicate_init=True)
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    return loop


def _module_b64(workload: str) -> tuple[str, str]:
    from edgelab.build import ensure_wasm
    from edgelab.workloads import get_workload

    spec = get_workload(workload)
    return base64.b64encode(ensure_wasm(spec).read_bytes()).decode(), spec.default_request.decode(
        "latin-1"
    )


def raw_cold_starts(rung: str, workload: str, n: int) -> list[int]:
    """``n`` startup times in ns of the work the lab times for ``rung`` (the workload's
    default request), with no lab. One untimed launch first, as the lab's warmup."""
    from py_mini_racer import mini_racer

    if rung not in RUNGS:
        raise ValueError(f"no raw isolate baseline for {rung!r} (one of {', '.join(RUNGS)})")
    loop = _loop()
    module, request = _module_b64(workload)
    compile_source = _COMPILE % module + _HANDLE  # its value: the request function
    timings: list[int] = []
    if rung == "isolate:context":
        with mini_racer(loop) as racer:
            handle = racer.eval(compile_source)
            for index in range(n + 1):
                t0 = time.perf_counter_ns()
                racer.eval(_INSTANCE)
                body = bytes(handle(request))
                elapsed = time.perf_counter_ns() - t0
                if index:
                    timings.append(elapsed)
                assert body, "no response"
        return timings
    for index in range(n + 1):
        t0 = time.perf_counter_ns()
        maker = mini_racer(loop)
        racer = maker.__enter__()
        handle = racer.eval(compile_source)
        racer.eval(_INSTANCE)
        body = bytes(handle(request))
        elapsed = time.perf_counter_ns() - t0
        maker.__exit__(None, None, None)
        if index:
            timings.append(elapsed)
        assert body, "no response"
    return timings


def lab_cold_starts(rung: str, workload: str, n: int) -> list[int]:
    """The lab's startup figures for a burst of ``rung`` alone."""
    from edgelab.lab import Lab, Settings

    result = Lab().run(Settings(workload=workload, runtimes=(rung,), count=n)).runtimes[rung]
    if result.error:
        raise SystemExit(f"edgelab: {rung}: {result.error}")
    return [s.startup_ns for s in result.measured if s.ok and s.startup_ns is not None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-w", "--workload", default="hello")
    parser.add_argument("-n", "--count", type=int, default=100)
    options = parser.parse_args()
    print(f"workload {options.workload}, {options.count} cold starts each; p50 in ms")
    print(f"{'rung':<18}{'lab p50':>10}{'raw p50':>10}{'lab/raw':>9}")
    for rung in RUNGS:
        lab = statistics.median(lab_cold_starts(rung, options.workload, options.count))
        raw = statistics.median(raw_cold_starts(rung, options.workload, options.count))
        print(f"{rung:<18}{lab / 1e6:>10.3f}{raw / 1e6:>10.3f}{lab / raw:>9.2f}")


if __name__ == "__main__":
    main()
