"""The microvm runtime: each instance is a QEMU ``microvm`` guest whose init is the workload.

QEMU's microvm machine is the design Firecracker follows: no PCI, virtio-mmio devices only,
and no BIOS (QEMU's qboot, a 64 KiB firmware, only enters the kernel's boot protocol). A guest boots Debian's cloud kernel (``kernel.py``) straight into an initramfs
(``initramfs.py``) holding ``init.c`` and the workload's own static native binary, the file
the subprocess runtime spawns. Request and response travel over a virtio serial port
(virtio-serial-device on virtio-mmio, ``/dev/vport0p1`` in the guest, a chardev on QEMU's
stdin/stdout here): the workload reads request frames on stdin and writes response frames on
stdout exactly as on a pipe. A port, not a console, so no tty line discipline ever sees a byte.

KVM where ``/dev/kvm`` exists *and* a guest boots under it within a short probe (run once per
machine boot, the verdict cached); TCG (software emulation) otherwise, and then every figure
carries the mark "emulated (TCG)". Each QEMU runs in a process group of its own registered with
the session watchdog, so a dead lab leaves no guest; stop kills the group and reaps it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from edgelab.errors import ArtifactError, LaunchFailed, LaunchTimeout, RuntimeUnavailable
from edgelab.protocol import Response, encode_request
from edgelab.runtimes.base import Instance, Launch, Runtime
from edgelab.runtimes.microvm import initramfs
from edgelab.runtimes.microvm.kernel import KERNEL_PACKAGE, Kernel, ensure_kernel, kernels_dir
from edgelab.runtimes.microvm.port import ResponseTooLarge, describe_exit, exchange, read_ready
from edgelab.workloads import Workload

QEMU = "qemu-system-x86_64"
INIT_SOURCE = Path(__file__).resolve().parent / "init.c"
INIT_FLAGS = ("-static", "-O2", "-s", "-std=c11", "-ffreestanding", "-nostdlib", "-fno-stack-protector", "-Wall", "-Wextra")
#: Guest memory: this much for the kernel, plus the workload's memory_limit_mib (its RLIMIT_AS
#: in the guest). The boot touches every page of guest RAM (a guest's QEMU's PSS grows 1:1 with
#: -m), so the bound is the cost of a resident guest. Measured: 64 MiB in all resets while the
#: bzImage unpacks itself, 72 MiB deadlocks on memory, 80 MiB boots hello; with 64 MiB + 32 MiB
#: membomb deadlocks the guest, with 80 + 32 it answers "out of memory" as the subprocess does.
KERNEL_MEMORY_MIB = 80
#: How long a guest may take to boot (to the ready byte), apart from the workload's timeout_s:
#: under TCG on a loaded 2-core machine a boot took 3-9 s.
BOOT_TIMEOUT_S = 60.0
#: How long a guest under KVM may take to write its ready byte before KVM is called unusable.
KVM_PROBE_S = 5.0
#: How long stop waits for a killed QEMU to be reaped.
REAP_S = 5.0
#: The kernel command line. quiet: the serial console is a log nobody waits for. panic=-1 and
#: QEMU's -no-reboot: when init (the workload) exits, the guest is gone at once.
CMDLINE = "console=ttyS0 quiet panic=-1 rdinit=/init"
#: Under TCG only: fixed loops-per-jiffy and TSC rate, so the kernel skips calibrating delay
#: loops and the TSC against an emulated PIT (seconds on a loaded host; udelay's accuracy is
#: all they change, and no figure is read from the guest's clock).
TCG_CMDLINE = "lpj=4000000 tsc_early_khz=2000000 tsc=reliable no_timer_check"
TCG_MARK = "emulated (TCG): no usable KVM here — not comparable to Firecracker's ≤125 ms"


def qemu_path() -> str | None:
    return shutil.which(QEMU)


@lru_cache(maxsize=1)
def qemu_version() -> str:
    try:
        out = subprocess.run([QEMU, "--version"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    first = out.splitlines()[0] if out else ""
    return first.removeprefix("QEMU emulator version ").strip() or "unknown"


def init_command(output: Path) -> list[str]:
    import sys

    return [sys.executable, "-m", "ziglang", "cc", "-target", "x86_64-linux-musl", *INIT_FLAGS,
            "-o", str(output), str(INIT_SOURCE)]  # fmt: skip


def init_path() -> Path:
    from edgelab.build import _BUILD_FORMAT, cache_dir, zig_version

    digest = hashlib.sha256()
    for part in (_BUILD_FORMAT, zig_version(), " ".join(INIT_FLAGS)):
        digest.update(part.encode() + b"\0")
    digest.update(INIT_SOURCE.read_bytes())
    return cache_dir() / "host" / f"microvm-init-{digest.hexdigest()[:16]}"


def ensure_init() -> Path:
    """The guest's init (a 3 KiB static binary), built on first use like the native launcher."""
    from edgelab.build import _build

    return _build(init_path(), init_command, "the microvm init", None, True)


def ensure_initramfs(kernel: Kernel, binary: Path | None, name: str) -> Path:
    """The initramfs for one workload binary (None: init alone, for the KVM probe), cached by
    the hash of everything in it."""
    init = ensure_init().read_bytes()
    workload = binary.read_bytes() if binary is not None else b""
    digest = hashlib.sha256(init + b"\0" + workload + b"\0" + kernel.release.encode()).hexdigest()[:16]
    path = kernels_dir() / "initramfs" / f"{name}-{digest}.cpio"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = initramfs.guest_entries(init, workload, kernel.modules)
    if binary is None:
        entries = [e for e in entries if e.name != "workload"]
    data = initramfs.newc_archive(entries)
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_bytes(data)
    os.replace(temp, path)
    return path


def guest_memory_mib(memory_limit_bytes: int) -> int:
    return KERNEL_MEMORY_MIB + -(-memory_limit_bytes // (1 << 20))


def qemu_argv(qemu: str, accel: str, kernel: Kernel, initrd: Path, serial_log: Path | str,
              memory_limit_bytes: int = 16 << 20) -> list[str]:  # fmt: skip
    """The whole QEMU command line of one guest (the raw baseline spawns the same)."""
    append = CMDLINE + (" " + TCG_CMDLINE if accel == "tcg" else "") + f" edgelab.as_limit={memory_limit_bytes}"
    return [
        qemu, "-M", "microvm", "-accel", accel, *(("-cpu", "max") if accel == "tcg" else ()),
        "-m", f"{guest_memory_mib(memory_limit_bytes)}M", "-smp", "1",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-kernel", str(kernel.vmlinuz), "-initrd", str(initrd), "-append", append,
        "-serial", f"file:{serial_log}",
        "-device", "virtio-serial-device",
        "-chardev", "stdio,id=data,signal=off",
        "-device", "virtserialport,chardev=data,name=edgelab",
    ]  # fmt: skip


#: Where a lab's guest writes its serial console: fd 3, an unnamed file (O_TMPFILE) the lab
#: holds, so no log file is ever left behind, whatever happens to the lab.
SERIAL_FD_PATH = "/dev/fd/3"


def spawn_qemu(argv: list[str], stdin_fd: int, stdout_fd: int, stderr: Path | None = None,
               serial_fd: int | None = None) -> int:  # fmt: skip
    """Start QEMU in a process group of its own (same session: the lab's), stdin/stdout the
    data port, stderr ``stderr`` or /dev/null, ``serial_fd`` as its fd 3; returns its pid."""
    target = os.devnull if stderr is None else str(stderr)
    devnull = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        actions = [(os.POSIX_SPAWN_DUP2, stdin_fd, 0), (os.POSIX_SPAWN_DUP2, stdout_fd, 1),
                   (os.POSIX_SPAWN_DUP2, devnull, 2)]  # fmt: skip
        if serial_fd is not None:
            actions.append((os.POSIX_SPAWN_DUP2, serial_fd, 3))
        return os.posix_spawn(argv[0], argv, {}, setpgroup=0, file_actions=actions)
    finally:
        os.close(devnull)


def guest_failure(serial_log: Path | int) -> str | None:
    """Why a guest ended, from its serial console: init.c's line (the workload's wait status,
    or the step that failed), else the kernel's panic line (``exitcode=`` is PID 1's status)."""
    try:
        if isinstance(serial_log, int):
            size = os.fstat(serial_log).st_size
            text = os.pread(serial_log, 16384, max(0, size - 16384)).decode(errors="replace")
        else:
            text = serial_log.read_text(errors="replace")[-16384:]
    except OSError:
        return None
    for line in text.splitlines():
        if "edgelab-init:" in line:
            said = line.split("edgelab-init:", 1)[1].strip()
            if said.startswith("wait status 0x"):
                with contextlib.suppress(ValueError):
                    return describe_exit(int(said.removeprefix("wait status 0x"), 16))
            return said
    marker = "Attempted to kill init! exitcode="
    if marker in text:
        code = text.split(marker, 1)[1].split()[0]
        with contextlib.suppress(ValueError):
            return describe_exit(int(code, 16))
    if "Kernel panic" in text:
        return text.split("Kernel panic", 1)[1].splitlines()[0].strip(" -")
    return None


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def kvm_verdict(kernel: Kernel, qemu: str) -> tuple[bool, str]:
    """(usable, why): may this machine run guests under KVM? /dev/kvm must be there and open,
    and a guest must write its ready byte within KVM_PROBE_S (nested virtualisation without VMX
    hangs after the BIOS). The probe's verdict is kept per machine boot."""
    if not os.path.exists("/dev/kvm"):
        return False, "no /dev/kvm (no hardware virtualisation exposed to this machine)"
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return False, "/dev/kvm is not readable and writable by this user (add it to the kvm group)"
    cache = kernels_dir() / f"kvm-{_boot_id()}-{kernel.release}.json"
    with contextlib.suppress(OSError, ValueError, KeyError):
        saved = json.loads(cache.read_text())
        return bool(saved["usable"]), str(saved["why"])
    usable, why = _probe_kvm(kernel, qemu)
    with contextlib.suppress(OSError):
        temp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
        temp.write_text(json.dumps({"usable": usable, "why": why}))
        os.replace(temp, cache)
    return usable, why


def _probe_kvm(kernel: Kernel, qemu: str) -> tuple[bool, str]:
    initrd = ensure_initramfs(kernel, None, "kvm-probe")
    with tempfile.TemporaryDirectory(prefix="edgelab-kvm-probe-") as scratch:
        argv = qemu_argv(qemu, "kvm", kernel, initrd, Path(scratch) / "serial.log")
        child_in, to_guest = os.pipe()
        from_guest, child_out = os.pipe()
        started = time.monotonic()
        errors = Path(scratch) / "stderr"
        pid = spawn_qemu(argv, child_in, child_out, errors)
        os.close(child_in)
        os.close(child_out)
        try:
            read_ready(from_guest, started + KVM_PROBE_S)
            return True, f"a guest booted under KVM in {time.monotonic() - started:.2f} s"
        except LaunchTimeout:
            return False, f"/dev/kvm is there, but a guest under KVM did not reach init within {KVM_PROBE_S:g} s (nested virtualisation without VMX?)"
        except LaunchFailed as exc:
            said = [ln for ln in errors.read_text(errors="replace").splitlines() if "error" in ln.lower()]
            return False, f"a guest under KVM failed: {said[0] if said else exc}"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
            os.close(to_guest)
            os.close(from_guest)


def _wait_exit(pid: int, within_s: float) -> bool:
    """Reap ``pid`` if it exits within ``within_s``; True once reaped (or not our child)."""
    end = time.monotonic() + within_s
    while True:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return True
        except ChildProcessError:
            return True
        if time.monotonic() > end:
            return False
        time.sleep(0.002)


class MicrovmInstance(Instance):
    """One live guest: its QEMU's pid (= its process group), the data port's two pipe ends."""

    runtime = "microvm"

    def __init__(self, owner: MicrovmRuntime, pid: int, stdin_fd: int, stdout_fd: int,
                 max_response_bytes: int, serial_fd: int) -> None:  # fmt: skip
        self._owner = owner
        self.pid = pid
        self._stdin = stdin_fd
        self._stdout = stdout_fd
        self._max_response = max_response_bytes
        #: The guest's serial console (an unnamed file), read when a launch fails.
        self.serial_fd = serial_fd
        self._stopped = False
        self._lock = threading.Lock()

    def watch_pgid(self) -> int | None:
        return self.pid

    def exchange(self, frame: bytes | memoryview, deadline: float) -> tuple[int, Response]:
        """Send (the rest of) a request frame; (ns when the first response byte came, response)."""
        return exchange(self._stdin, self._stdout, frame, deadline, self._max_response)

    def request(self, payload: bytes, timeout_s: float) -> Response:
        with self._lock:
            if self._stopped:
                raise LaunchFailed("instance already stopped")
            try:
                return self.exchange(encode_request(payload), time.monotonic() + timeout_s)[1]
            except LaunchFailed as exc:
                failure = exc
        raise self.failed(failure, timeout_s)

    def failed(self, exc: LaunchFailed, timeout_s: float) -> LaunchFailed:
        """Stop the guest after a failed exchange; the failure said as precisely as the guest's
        console allows (the workload's exit status from the kernel's panic line)."""
        if isinstance(exc, LaunchTimeout):
            self.stop()
            return LaunchTimeout(f"timed out after {timeout_s:g} s")
        if not isinstance(exc, ResponseTooLarge):
            _wait_exit(self.pid, REAP_S)  # EOF: the guest is powering off; its console says why
            reason = guest_failure(self.serial_fd)
            self.stop()
            return LaunchFailed(f"{reason} before answering") if reason else exc
        self.stop()
        return LaunchFailed(str(exc))

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        for fd in (self._stdin, self._stdout):
            with contextlib.suppress(OSError):
                os.close(fd)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        _wait_exit(self.pid, REAP_S)
        with contextlib.suppress(OSError):
            os.close(self.serial_fd)
        self._owner._untrack(self)


PHASES = ("boot", "first_response")


@dataclass(frozen=True)
class _Pending:
    """A guest spawned and handed its request, not yet answered."""

    instance: MicrovmInstance
    rest: memoryview
    started_ns: int


class MicrovmRuntime(Runtime):
    name = "microvm"
    phase_names = PHASES
    memory_metric = "PSS of the guest's QEMU process (guest RAM it has touched included)"

    def __init__(self, session, accel: str = "auto", kernel_package: str = KERNEL_PACKAGE,  # type: ignore[no-untyped-def]
                 boot_timeout_s: float = BOOT_TIMEOUT_S) -> None:  # fmt: skip
        super().__init__(session)
        if accel not in ("auto", "kvm", "tcg"):
            raise ValueError(f"accel must be auto, kvm or tcg, not {accel!r}")
        self._accel_asked = accel
        self._kernel_package = kernel_package
        self.boot_timeout_s = boot_timeout_s
        self._kernel: Kernel | None = None
        self._qemu: str | None = None
        self.accel: str | None = None
        self.kvm_why = ""
        self._initrds: dict[str, Path] = {}

    @property  # type: ignore[misc]  # the base declares a class constant; here it depends on the host
    def startup_includes(self) -> str:  # type: ignore[override]
        accel = (self.accel or "?").upper()
        return (f"boot: spawn of qemu-system-x86_64 (microvm, {accel}, {KERNEL_MEMORY_MIB} MiB + the workload's "
                "memory limit, 1 vCPU) to the "
                "guest init's ready byte on the virtio serial port (kernel boot, virtio modules loaded); "
                "first response: fork and exec of the workload by init, and its answer (kernel and initramfs "
                "prebuilt; excludes kill and reap)")  # fmt: skip

    # -- availability -------------------------------------------------------------------
    def check(self) -> None:
        if platform.machine().lower() not in ("x86_64", "amd64"):
            raise RuntimeUnavailable(self.name, f"microVM guests are amd64; this machine is {platform.machine()}",
                                     "run on an x86_64 host")  # fmt: skip
        qemu = qemu_path()
        if qemu is None:
            raise RuntimeUnavailable(self.name, f"{QEMU} not found", "apt-get install qemu-system-x86")
        self._qemu = qemu
        self._kernel = ensure_kernel(self._kernel_package, self.name)
        try:
            ensure_init()
        except ArtifactError as exc:
            raise RuntimeUnavailable(self.name, str(exc), "edgelab build shows the compiler's error") from None
        if self.accel is None:
            self._choose_accel()

    def _choose_accel(self) -> None:
        assert self._kernel is not None and self._qemu is not None
        if self._accel_asked == "tcg":
            self.accel, self.kvm_why = "tcg", "TCG asked for"
            return
        usable, why = kvm_verdict(self._kernel, self._qemu)
        self.kvm_why = why
        if self._accel_asked == "kvm" and not usable:
            raise RuntimeUnavailable(self.name, f"KVM asked for but unusable: {why}", "use accel=auto (TCG)")
        self.accel = "kvm" if usable else "tcg"

    def marks(self) -> tuple[str, ...]:
        return (TCG_MARK,) if self.accel == "tcg" else ()

    def versions(self) -> dict[str, str]:
        found = {"qemu": qemu_version(), "accelerator": self.accel or "unknown"}
        if self._kernel is not None:
            found["kernel"] = f"{self._kernel.release} ({self._kernel.package} {self._kernel.version})"
        return found

    def doctor_details(self) -> dict[str, str]:
        details = {
            "accelerator": (self.accel or "unknown").upper(),
            "kvm": self.kvm_why or "not probed yet",
            "guest": f"QEMU microvm (virtio-mmio, no PCI, qboot, no BIOS), {KERNEL_MEMORY_MIB} MiB + the workload's "
                     "memory_limit_mib (its RLIMIT_AS in the guest), 1 vCPU, no network",
            "console": "request/response on a virtio serial port (not a tty: no line discipline)",
        }
        if self._kernel is not None:
            details["kernel"] = f"{self._kernel.release}, cached in {self._kernel.directory}"
        return details

    # -- lifecycle ------------------------------------------------------------------------
    def prepare(self, workload: Workload) -> None:
        from edgelab.build import ensure_native

        if self._kernel is None or self.accel is None:
            self.check()
        assert self._kernel is not None
        try:
            binary = ensure_native(workload, "x86_64")
            self._initrds[workload.name] = ensure_initramfs(self._kernel, binary, workload.name)
        except ArtifactError as exc:
            fix = getattr(exc, "fix", None) or "edgelab build shows the compiler's error"
            raise RuntimeUnavailable(self.name, str(exc), fix) from None
        except OSError as exc:
            raise RuntimeUnavailable(self.name, f"cannot write the initramfs: {exc.strerror or exc}",
                                     "set EDGELAB_CACHE_DIR to a writable folder") from None  # fmt: skip

    def argv_for(self, workload: Workload, serial_log: Path | str = SERIAL_FD_PATH) -> list[str]:
        """The QEMU command line of one instance of ``workload`` (after ``prepare``)."""
        assert self._qemu is not None and self._kernel is not None and self.accel is not None
        return qemu_argv(self._qemu, self.accel, self._kernel, self._initrds[workload.name], serial_log,
                         workload.memory_limit_bytes)  # fmt: skip

    @staticmethod
    def _serial_file() -> int:
        """An unnamed file for one guest's serial console (O_TMPFILE: it vanishes with its fds)."""
        try:
            return os.open(tempfile.gettempdir(), os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise LaunchFailed(f"cannot make the guest's console file: {exc.strerror or exc}") from None

    def launch(self, workload: Workload, request: bytes, timeout_s: float) -> Launch:
        return self._finish(self._spawn(workload, request), timeout_s)

    def launch_many(self, workload: Workload, request: bytes, n: int, timeout_s: float) -> list[Launch]:
        """Resident guests for a ramp, booted up to one per core at a time (each TCG guest
        keeps one core busy while it boots). All or nothing, as the base says."""
        width = max(1, os.cpu_count() or 1)
        launches: list[Launch] = []
        pending: list[_Pending] = []
        try:
            while len(launches) < n:
                for _ in range(min(width, n - len(launches))):
                    pending.append(self._spawn(workload, request))
                while pending:
                    launches.append(self._finish(pending[0], timeout_s))
                    pending.pop(0)
        except BaseException:
            self.stop_many([p.instance for p in pending] + [launch.instance for launch in launches])
            raise
        return launches

    def _spawn(self, workload: Workload, request: bytes) -> _Pending:
        """Start one guest and hand it its request (it waits in the pipe until the guest opens
        its port); the clock starts right before QEMU's spawn."""
        if workload.name not in self._initrds:
            self.prepare(workload)
        frame = encode_request(request)
        serial_fd = self._serial_file()
        argv = self.argv_for(workload)
        child_in, to_guest = os.pipe()
        from_guest, child_out = os.pipe()
        os.set_blocking(to_guest, False)
        os.set_blocking(from_guest, False)
        started = time.perf_counter_ns()
        try:
            pid = spawn_qemu(argv, child_in, child_out, serial_fd=serial_fd)
        except OSError as exc:
            for fd in (child_in, to_guest, from_guest, child_out, serial_fd):
                os.close(fd)
            raise LaunchFailed(f"spawn of {QEMU} failed: {exc.strerror}") from None
        os.close(child_in)
        os.close(child_out)
        instance = MicrovmInstance(self, pid, to_guest, from_guest, workload.max_response_bytes, serial_fd)
        self._track(instance)
        try:
            sent = os.write(to_guest, frame)
        except (BlockingIOError, BrokenPipeError):
            sent = 0
        return _Pending(instance, memoryview(frame)[sent:], started)

    def _finish(self, pending: _Pending, timeout_s: float) -> Launch:
        """Wait for the guest's ready byte (its boot) and then its first response."""
        instance = pending.instance
        try:
            read_ready(instance._stdout, time.monotonic() + self.boot_timeout_s)
            ready = time.perf_counter_ns()
            first, response = instance.exchange(pending.rest, time.monotonic() + timeout_s)
        except LaunchTimeout as exc:
            instance.stop()
            if "boot" in str(exc):
                raise LaunchTimeout(f"the microVM did not boot within {self.boot_timeout_s:g} s") from None
            raise LaunchTimeout(f"timed out after {timeout_s:g} s") from None
        except LaunchFailed as exc:
            raise instance.failed(exc, timeout_s) from None
        except BaseException:
            instance.stop()
            raise
        started = pending.started_ns
        return Launch(instance, response, first - started, {"boot": ready - started, "first_response": first - ready})

    def pss_bytes(self, instances: Sequence[Instance]) -> int:
        import psutil

        total = 0
        for instance in instances:
            try:
                total += psutil.Process(instance.pid).memory_full_info().pss  # type: ignore[attr-defined]
            except (psutil.Error, AttributeError):
                pass
        return total
