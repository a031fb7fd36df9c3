"""The six workloads as native static binaries, driven through the real frame protocol.

Artifacts are built once per session into the default cache, so repeated runs are fast.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import struct
import subprocess
from collections.abc import Callable, Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from edgelab import build
from edgelab.protocol import Response, encode_request
from edgelab.workloads import Workload, load_workloads

JWT_KEY = b"edgelab-demo-secret"


@pytest.fixture(scope="session")
def workloads() -> dict[str, Workload]:
    return load_workloads()


@pytest.fixture(scope="session", params=["static", "dynamic"])
def binaries(workloads: dict[str, Workload], request: pytest.FixtureRequest) -> dict[str, Path]:
    """Every test runs on the static binary and on the build linked against the system glibc
    (the subprocess:dynamic rung's): the same frames, the same bytes."""
    target = "native" if request.param == "static" else f"{build.host_arch()}-{request.param}"
    built = build.ensure_all(workloads.values(), targets=(target,))
    return {name: path for (name, _), path in built.items()}


def parse_responses(data: bytes) -> list[Response]:
    responses, offset = [], 0
    while offset < len(data):
        length, status = struct.unpack_from("<IB", data, offset)
        body = data[offset + 5 : offset + 5 + length]
        assert len(body) == length, "truncated response frame"
        responses.append(Response(status, body))
        offset += 5 + length
    return responses


def run(binary: Path, *requests: bytes) -> list[Response]:
    """One process, all requests in one go, stdin closed after the last one."""
    stdin = b"".join(encode_request(r) for r in requests)
    done = subprocess.run([str(binary)], input=stdin, capture_output=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    responses = parse_responses(done.stdout)
    assert len(responses) == len(requests)
    return responses


def ask(binary: Path, request: bytes) -> Response:
    return run(binary, request)[0]


class Resident:
    """A live process answering one request at a time (stdin kept open in between)."""

    def __init__(self, binary: Path) -> None:
        self.proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def request(self, payload: bytes) -> Response:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(encode_request(payload))
        self.proc.stdin.flush()
        length, status = struct.unpack("<IB", self.proc.stdout.read(5))
        return Response(status, self.proc.stdout.read(length))

    def close(self) -> int:
        assert self.proc.stdin
        self.proc.stdin.close()
        return self.proc.wait(timeout=10)


@pytest.fixture
def resident(binaries: dict[str, Path]) -> Iterator[Callable[[str], Resident]]:
    started: list[Resident] = []

    def start(name: str) -> Resident:
        started.append(Resident(binaries[name]))
        return started[-1]

    yield start
    for r in started:
        if r.proc.poll() is None:
            r.proc.kill()
        r.proc.wait()


def fib(n: int) -> int:
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


# ---- every workload ----


def test_default_requests_succeed(
    workloads: dict[str, Workload], binaries: dict[str, Path]
) -> None:
    for name, workload in workloads.items():
        response = ask(binaries[name], workload.default_request)
        assert response.status == 0, (name, response)
        assert response.body


def test_empty_stdin_exits_cleanly(binaries: dict[str, Path]) -> None:
    done = subprocess.run(
        [str(binaries["hello"])], input=b"", capture_output=True, timeout=10, check=False
    )
    assert (done.returncode, done.stdout) == (0, b"")


def test_truncated_frame_exits_nonzero(binaries: dict[str, Path]) -> None:
    done = subprocess.run(
        [str(binaries["hello"])],
        input=struct.pack("<I", 10) + b"abc",
        capture_output=True,
        timeout=10,
        check=False,
    )
    assert done.returncode == 3
    assert done.stdout == b""


def test_oversized_frame_is_drained_and_rejected(
    workloads: dict[str, Workload], binaries: dict[str, Path]
) -> None:
    limit = workloads["hello"].max_request_bytes
    big, after = run(binaries["hello"], b"x" * (limit + 1), b"again")
    assert big.status == 1
    assert big.body.decode() == (
        f"request of {limit + 1} bytes exceeds this workload's limit of {limit} bytes"
    )
    assert after == Response(0, b"hello, again")


# ---- hello ----


def test_hello(binaries: dict[str, Path]) -> None:
    assert run(binaries["hello"], b"", b"edgelab", b"a\0b") == [
        Response(0, b"hello, world"),
        Response(0, b"hello, edgelab"),
        Response(0, b"hello, a\0b"),
    ]


# ---- fib ----


@pytest.mark.parametrize("n", [0, 1, 2, 10, 50, 90])
def test_fib_matches_python(binaries: dict[str, Path], n: int) -> None:
    assert ask(binaries["fib"], str(n).encode()) == Response(0, str(fib(n)).encode())


def test_fib_90_is_known_value(binaries: dict[str, Path]) -> None:
    assert ask(binaries["fib"], b" 90\n").body == b"2880067194370816120"


@pytest.mark.parametrize(
    "bad", [b"91", b"-1", b"abc", b"", b"  ", b"1 2", b"+5", b"99999999999999999999"]
)
def test_fib_rejects(binaries: dict[str, Path], bad: bytes) -> None:
    assert ask(binaries["fib"], bad) == Response(1, b"n must be an integer 0..90")


def test_resident_process_answers_more(resident: Callable[[str], Resident]) -> None:
    proc = resident("fib")
    for n in (10, 90, 0, 91, 20):
        response = proc.request(str(n).encode())
        assert response == (
            Response(0, str(fib(n)).encode()) if n <= 90 else Response(1, response.body)
        )
    assert proc.close() == 0


# ---- sha256 ----


@pytest.mark.parametrize(
    "payload",
    [b"", b"a", b"\0\x01\0binary\0\xff", b"x" * 55, b"x" * 56, b"x" * 64, b"y" * 119, b"z" * 1000],
    ids=["empty", "1-byte", "binary-nul", "55", "56", "64", "119", "1000"],
)
def test_sha256_matches_hashlib(binaries: dict[str, Path], payload: bytes) -> None:
    assert ask(binaries["sha256"], payload) == Response(
        0, hashlib.sha256(payload).hexdigest().encode()
    )


def test_sha256_8mib_random_several_on_one_process(
    resident: Callable[[str], Resident],
) -> None:
    proc = resident("sha256")
    big = os.urandom(8 * 1024 * 1024)
    for payload in (big, b"small after big", big[:12345]):
        assert proc.request(payload) == Response(0, hashlib.sha256(payload).hexdigest().encode())
    assert proc.close() == 0


# ---- jwt ----


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def make_jwt(claims: dict, header: dict | None = None, key: bytes = JWT_KEY) -> bytes:
    head = b64url(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims).encode())
    signing_input = f"{head}.{body}".encode()
    return (
        signing_input
        + b"."
        + b64url(hmac.new(key, signing_input, hashlib.sha256).digest()).encode()
    )


def test_jwt_default_request_is_valid(
    workloads: dict[str, Workload], binaries: dict[str, Path]
) -> None:
    assert ask(binaries["jwt"], workloads["jwt"].default_request) == Response(0, b"valid sub=alice")


def test_jwt_verdicts(binaries: dict[str, Path]) -> None:
    good = make_jwt({"sub": "bob", "exp": 1})  # exp is not checked: no clock
    head, body, _ = good.split(b".")
    alg_none = b64url(b'{"alg":"none"}').encode() + b"." + body + b"."
    cases = {
        good: "valid sub=bob",
        b"  " + good + b"\r\n": "valid sub=bob",
        make_jwt({"name": "no subject"}): "valid (no sub)",
        make_jwt({"sub": 'caf\u00e9 "q"'}): 'valid sub=caf\u00e9 "q"',
        make_jwt({"sub": "bob"}, key=b"wrong key"): "invalid: bad signature",
        head + b"." + body + b"." + b64url(b"short").encode(): "invalid: bad signature",
        alg_none: "invalid: alg is not HS256",
        make_jwt({"sub": "x"}, header={"alg": "HS512"}): "invalid: alg is not HS256",
        b"abc": "invalid: malformed token",
        b"a.b": "invalid: malformed token",
        b"a.b.c.d": "invalid: malformed token",
        head + b"." + b64url(b"not json").encode() + b".sig": "invalid: malformed token",
        head + b"." + b64url(b"[1,2]").encode() + b".sig": "invalid: malformed token",
        b"!!!." + body + b".sig": "invalid: malformed token",
    }
    requests = list(cases)
    for request, response in zip(requests, run(binaries["jwt"], *requests), strict=True):
        assert response == Response(0, cases[request].encode()), request


@pytest.mark.parametrize("garbage", [b"", b"   ", b"tok\xffen", b"a.b\0.c"])
def test_jwt_rejects_non_tokens(binaries: dict[str, Path], garbage: bytes) -> None:
    response = ask(binaries["jwt"], garbage)
    assert response.status == 1
    assert response.body.startswith(b"request must be a JWT")


# ---- resize ----


def pnm(magic: bytes, width: int, height: int, pixels: bytes) -> bytes:
    return magic + f"\n{width} {height}\n255\n".encode() + pixels


def box_halve(width: int, height: int, channels: int, pixels: bytes) -> bytes:
    out = bytearray()
    for y in range(0, height, 2):
        for x in range(0, width, 2):
            for c in range(channels):
                vals = [
                    pixels[(yy * width + xx) * channels + c]
                    for yy in (y, y + 1)
                    for xx in (x, x + 1)
                    if yy < height and xx < width
                ]
                out.append((sum(vals) + len(vals) // 2) // len(vals))
    return bytes(out)


def test_resize_default_image(workloads: dict[str, Workload], binaries: dict[str, Path]) -> None:
    response = ask(binaries["resize"], workloads["resize"].default_request)
    assert response.status == 0
    assert response.body.startswith(b"P5\n32 32\n255\n")
    assert len(response.body) == len(b"P5\n32 32\n255\n") + 32 * 32


@pytest.mark.parametrize("magic,channels", [(b"P5", 1), (b"P6", 3)])
@pytest.mark.parametrize("width,height", [(1, 1), (2, 2), (5, 3), (16, 9)])
def test_resize_matches_python(
    binaries: dict[str, Path], magic: bytes, channels: int, width: int, height: int
) -> None:
    pixels = bytes((i * 37 + 11) % 256 for i in range(width * height * channels))
    response = ask(binaries["resize"], pnm(magic, width, height, pixels))
    ow, oh = (width + 1) // 2, (height + 1) // 2
    expected = magic + f"\n{ow} {oh}\n255\n".encode() + box_halve(width, height, channels, pixels)
    assert response == Response(0, expected)


def test_resize_accepts_header_comments(binaries: dict[str, Path]) -> None:
    response = ask(binaries["resize"], b"P5 # grey\n2 # w\n2\n255\n\x00\x02\x04\x06")
    assert response == Response(0, b"P5\n1 1\n255\n\x03")


@pytest.mark.parametrize(
    "bad",
    [
        b"",
        b"P4\n1 1\n255\n\0",
        b"P5\n",
        b"P5\nx 2\n255\n",
        b"P5\n2 2\n65535\n" + b"\0" * 8,
        b"P5\n0 2\n255\n",
        b"P5\n2 2\n255\n\0",
        b"P5\n1 1\n255\n\0\0",
        b"P5\n1 1\n255",
    ],
)
def test_resize_rejects_malformed(binaries: dict[str, Path], bad: bytes) -> None:
    response = ask(binaries["resize"], bad)
    assert response.status == 1
    assert b"\n" not in response.body and response.body


# ---- iot ----


def fmt(value: Decimal) -> str:
    """Three decimals, and never a negative zero (the workload has none)."""
    return f"{value if value else Decimal(0):.3f}"


def iot_expected(text: str) -> bytes:
    readings: dict[str, list[Decimal]] = {}
    for line in text.splitlines():
        if line.strip():
            sensor, value = line.split(",")
            readings.setdefault(sensor, []).append(Decimal(value))
    lines = []
    for sensor in sorted(readings):
        values = readings[sensor]
        mean = (sum(values, Decimal(0)) / len(values)).quantize(
            Decimal("0.001"), rounding=ROUND_HALF_UP
        )
        lines.append(f"{sensor} {len(values)} {fmt(min(values))} {fmt(max(values))} {fmt(mean)}\n")
    return "".join(lines).encode()


def test_iot_default_request(workloads: dict[str, Workload], binaries: dict[str, Path]) -> None:
    text = workloads["iot"].default_request.decode()
    assert ask(binaries["iot"], text.encode()) == Response(0, iot_expected(text))


def test_iot_numbers_match_python(binaries: dict[str, Path]) -> None:
    import random

    rng = random.Random(7)
    lines = []
    for _ in range(3000):
        sensor = rng.choice(["t-1", "t-2", "hum.a", "B:9", "z_z", "A"])
        milli = rng.randint(-5_000_000, 5_000_000)
        lines.append(
            f"{sensor},{'-' if milli < 0 else ''}{abs(milli) // 1000}.{abs(milli) % 1000:03d}"
        )
    lines += [
        "neg,-0.001",
        "neg,-0.0",
        "neg,0.0005"[:-1],
        "round,1.0005"[:-1],
        "round,0.001",
        "round,0",
    ]
    text = "\r\n".join(lines) + "\n\n"
    assert ask(binaries["iot"], text.encode()) == Response(0, iot_expected(text.replace("\r", "")))


def test_iot_mean_rounds_half_away_from_zero(binaries: dict[str, Path]) -> None:
    response = ask(
        binaries["iot"], b"p,0.001\np,0.002\nn,-0.001\nn,-0.002\nz,-0.001\nz,0.002\nz,-0.002\n"
    )
    assert response == Response(
        0, b"n 2 -0.002 -0.001 -0.002\np 2 0.001 0.002 0.002\nz 3 -0.002 0.002 0.000\n"
    )


@pytest.mark.parametrize(
    "bad,line",
    [
        (b"a,1\nb;2\n", 2),
        (b"a,1\n\n,3\n", 3),
        (b"a,1e3", 1),
        (b"a,1.2345", 1),
        (b"a b,1", 1),
        (b"a,", 1),
        (b"a,1234567890", 1),
        (b"a,.5", 1),
        (b"a,1,2", 1),
    ],
)
def test_iot_rejects_with_line_number(binaries: dict[str, Path], bad: bytes, line: int) -> None:
    response = ask(binaries["iot"], bad)
    assert response.status == 1
    assert re.fullmatch(rf"line {line}: .+", response.body.decode())


def test_iot_rejects_empty(binaries: dict[str, Path]) -> None:
    assert ask(binaries["iot"], b"\n\n").status == 1


# -- the hostile flood and escape, at the frame level ----------------------------------------
@pytest.fixture(scope="session")
def hostile_binaries() -> dict[str, Path]:
    from edgelab.workloads import get_workload

    return {name: build.ensure_native(get_workload(name)) for name in ("flood", "escape")}


@pytest.mark.parametrize("size", [0, 1, 65535, 65536, 65537, 1_000_000])
def test_flood_sends_exactly_the_size_asked(hostile_binaries: dict[str, Path], size: int) -> None:
    done = subprocess.run(
        [str(hostile_binaries["flood"])], input=encode_request(str(size).encode()),
        capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0
    assert struct.unpack_from("<IB", done.stdout) == (size, 0)
    assert done.stdout[5:] == b"x" * size  # one frame: the workload exits after streaming


def test_flood_announces_4_gib_by_default(hostile_binaries: dict[str, Path]) -> None:
    proc = subprocess.Popen([str(hostile_binaries["flood"])], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin and proc.stdout
    proc.stdin.write(encode_request(b"flood"))
    proc.stdin.flush()
    header = proc.stdout.read(5)
    first = proc.stdout.read(1 << 16)
    proc.stdout.close()  # the reader goes away: the flood ends on EPIPE
    assert proc.wait(timeout=10) != 0
    proc.stdin.close()
    assert struct.unpack("<IB", header) == (4 * 1024**3 - 1, 0)
    assert first == b"x" * (1 << 16)


def test_escape_detaches_a_grandchild_in_a_new_session(hostile_binaries: dict[str, Path]) -> None:
    """What the runtimes must contain: a live grandchild with its own session, outside the
    workload's process group, not its child."""
    import psutil

    proc = subprocess.Popen(
        [str(hostile_binaries["escape"])], stdin=subprocess.PIPE, stdout=subprocess.PIPE, process_group=0
    )
    out, _ = proc.communicate(encode_request(b""), timeout=30)
    assert proc.returncode == 0
    length, status = struct.unpack_from("<IB", out)
    match = re.fullmatch(rb"escaped: grandchild (\d+)", out[5 : 5 + length])
    assert status == 0 and match, out
    grandchild = psutil.Process(int(match.group(1)))
    try:
        assert grandchild.name().startswith("escape-")
        assert os.getsid(grandchild.pid) not in (os.getsid(0), proc.pid)  # the middle one's session
        assert os.getpgid(grandchild.pid) == os.getsid(grandchild.pid) != proc.pid  # not the workload's group
        assert grandchild.ppid() != proc.pid
    finally:
        grandchild.kill()
        with contextlib.suppress(psutil.Error, ChildProcessError):
            grandchild.wait(timeout=5)


def test_the_fork_server_build_without_the_labs_socket_exits_at_once(workloads: dict[str, Workload]) -> None:
    """The fork-server build serves asks on a unix socket at fd 0 and never answers a frame
    itself: with a pipe there it exits with code 5 (EL_FS_EXIT_CONTROL) and writes nothing."""
    binary = build.ensure_native(workloads["hello"], variant="forkserver")
    done = subprocess.run([str(binary)], input=encode_request(b"hi"), capture_output=True, timeout=10, check=False)
    assert (done.returncode, done.stdout) == (5, b"")
