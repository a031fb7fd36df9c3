"""Resident density at scale: 100,000 Wasm instances, 100 containers, 1,000 processes.

One ramp (``Lab.run``, scenario ramp, the code path of ``edgelab run --resident`` and the TUI)
brings each runtime up to its target in turn and holds everything; per runtime it prints the
user-space figure (PSS growth / N), the host figure (what the machine loses / N: the fall of
MemAvailable during that runtime's ramp, or the cgroups' memory for containers when that fall
is within noise) and its basis, the cgroups' memory (kernel memory included) for containers,
instances per GiB from the host figure, and the ramp rate (instances per second, launch calls
only). While everything is held, ``docker stats --no-stream`` — an instrument independent of
the lab — is read for the session's containers and summed, as a check on the cgroup figure.

A limit the machine or a runtime hits first (pids, mappings, memory, a full Wasm pool, the
engine) stops that ramp with one line naming it; the figures then describe what it held.

    python benchmarks/density.py [--wasm 100000] [--containers 100] [--processes 1000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from robust import machine_load

from edgelab.events import LabEvent, RampHeld
from edgelab.lab import Lab, Settings
from edgelab.session import SESSION_LABEL
from edgelab.stats import format_bytes

TARGET_WASM_HOST_BYTES = 8 * 1024
_UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "kB": 1000, "MB": 10**6, "GB": 10**9}


def parse_docker_bytes(text: str) -> float:
    """'1.23MiB' -> bytes, as docker stats prints them."""
    text = text.strip()
    for unit in sorted(_UNITS, key=len, reverse=True):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * _UNITS[unit]
    return float(text)


def docker_stats_bytes(session_id: str) -> tuple[float, int] | None:
    """(summed memory, containers) from ``docker stats --no-stream`` over this session's
    containers, or None where the docker CLI or the engine does not answer."""
    try:
        ids = subprocess.run(
            ["docker", "ps", "-q", "--filter", f"label={SESSION_LABEL}={session_id}"],
            capture_output=True, text=True, check=True, timeout=60,
        ).stdout.split()
        if not ids:
            return None
        lines = subprocess.run(
            ["docker", "stats", "--no-stream", "--format", "{{json .}}", *ids],
            capture_output=True, text=True, check=True, timeout=300,
        ).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    usages = [parse_docker_bytes(json.loads(line)["MemUsage"].split("/")[0]) for line in lines if line.strip()]
    return sum(usages), len(usages)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="hello")
    parser.add_argument("--wasm", type=int, default=100_000, help="resident Wasm instances (0: none)")
    parser.add_argument("--containers", type=int, default=100, help="resident containers (0: none)")
    parser.add_argument("--processes", type=int, default=1_000, help="resident processes (0: none)")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON")
    args = parser.parse_args()
    targets = {"container": args.containers, "subprocess": args.processes, "wasm": args.wasm}
    if any(n < 0 for n in targets.values()) or not any(targets.values()):
        print("edgelab: give each count as 0 or more, and at least one above 0", file=sys.stderr)
        return 2
    targets = {name: n for name, n in targets.items() if n > 0}
    lab = Lab()
    stats: dict[str, Any] = {}

    def on_event(event: LabEvent) -> None:
        if isinstance(event, RampHeld):  # everything is held: read the independent instrument
            if "container" in targets:
                read = docker_stats_bytes(lab.session.id)
                if read is not None:
                    stats["docker_stats_bytes"], stats["docker_stats_containers"] = read
            stats["held_at"] = time.monotonic()
            cancel.set()  # ends the hold: a completed run

    import threading

    cancel = threading.Event()
    load_before = machine_load()
    started = time.monotonic()
    try:
        result = lab.run(
            Settings(workload=args.workload, scenario="ramp", runtimes=tuple(targets), resident=targets, hold=True),
            on_event=on_event, cancel=cancel,
        )
    finally:
        lab.close(wait_s=10)
    wall_s = time.monotonic() - started

    failures = 0
    print(f"\nresident density of {args.workload} ({load_before} before, {machine_load()} after; {wall_s:.1f} s in all,"
          " stop included)")
    print(f"{'runtime':<11} {'held':>15} {'user-space':>11} {'host':>11} {'cgroup':>11} {'docker stats':>13}"
          f" {'per GiB':>9} {'ramp /s':>9}")
    report: dict[str, Any] = {"workload": args.workload, "load_before": load_before, "runtimes": {}}
    for name, target in targets.items():
        runtime = result.runtimes[name]
        memory = runtime.memory
        if memory is None:
            print(f"{name:<11} no figure: {runtime.first_error()}")
            failures += 1
            continue
        host = memory.host_bytes_per_instance
        cgroup = memory.cgroup_bytes_per_instance
        docker = None
        if name == "container" and stats.get("docker_stats_containers"):
            docker = stats["docker_stats_bytes"] / stats["docker_stats_containers"]
        print(
            f"{name:<11} {memory.instances:>7,}/{target:<7,} {format_bytes(memory.pss_bytes_per_instance):>11}"
            f" {format_bytes(host) if host is not None else '–':>11} {format_bytes(cgroup) if cgroup is not None else '–':>11}"
            f" {format_bytes(docker) if docker is not None else '–':>13}"
            f" {memory.instances_per_gib:>9,.0f} {memory.ramp_rate_per_s or 0:>9,.0f}"
        )
        print(f"{'':<11} user-space = {memory.metric}; host = {memory.host_basis}")
        for warning in memory.warnings():
            print(f"{'':<11} warning: {warning}")
        failures += memory.instances < target
        report["runtimes"][name] = memory.to_json() | {
            "docker_stats_kib_per_instance": docker / 1024 if docker is not None else None,
        }
    if "container" in targets and "docker_stats_containers" in stats:
        print(f"docker stats (independent instrument): {stats['docker_stats_containers']} containers,"
              f" {format_bytes(stats['docker_stats_bytes'])} in all")
    wasm = result.runtimes.get("wasm")
    if wasm is not None and wasm.memory is not None:
        host = wasm.memory.host_bytes_per_instance
        ok = host is not None and host <= TARGET_WASM_HOST_BYTES and wasm.memory.instances >= targets["wasm"]
        failures += not ok
        print(f"wasm: {wasm.memory.instances:,} held at {format_bytes(host) if host is not None else '–'} host memory each"
              f" (target {targets['wasm']:,} at <= {format_bytes(TARGET_WASM_HOST_BYTES)}) {'ok' if ok else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
