"""Your own function, the front door (issue 13): the flags of ``edgelab run --wasm/--image/
--command``, ``edgelab add`` and the saved workloads folder, and how a function's run is
printed and exported. No runtime starts here: real files (a WAT module, /bin/busybox) are only
read and checked; the end to end runs are in test_functions_e2e.py.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from edgelab import cli
from edgelab.commands import print_result, settings_from_args
from edgelab.errors import ManifestError
from edgelab.export import to_csv, to_json, to_markdown
from edgelab.results import RunResult, RuntimeResult, Sample
from edgelab.runtimes import registry
from edgelab.workloads import get_workload, load_manifest, load_workloads, user_workloads_dir

BUSYBOX = "/bin/busybox"
#: A WASI command that copies stdin to stdout (fd_read into a buffer, fd_write it back).
CAT_WAT = """
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (func (export "_start")
    (local $n i32)
    (block $done
      (loop $again
        (i32.store (i32.const 0) (i32.const 1024))
        (i32.store (i32.const 4) (i32.const 65536))
        (br_if $done (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
        (local.set $n (i32.load (i32.const 8)))
        (br_if $done (i32.eqz (local.get $n)))
        (i32.store (i32.const 16) (i32.const 1024))
        (i32.store (i32.const 20) (local.get $n))
        (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))
        (br $again)))))
"""

needs_busybox = pytest.mark.skipif(not os.access(BUSYBOX, os.X_OK), reason="needs busybox-static (/bin/busybox)")


@pytest.fixture(scope="module")
def cat_wasm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    wasmtime = pytest.importorskip("wasmtime")
    path = tmp_path_factory.mktemp("wasm") / "cat.wasm"
    path.write_bytes(bytes(wasmtime.wat2wasm(CAT_WAT)))
    return path


@pytest.fixture
def workloads_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh user workloads folder and data dir for each test."""
    folder = tmp_path / "saved"
    monkeypatch.setenv("EDGELAB_WORKLOADS_DIR", str(folder))
    monkeypatch.setenv("EDGELAB_DATA_DIR", str(tmp_path / "data"))
    return folder


def run_args(*argv: str) -> object:
    return cli.build_parser().parse_args(["run", *argv])


def fails(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run the CLI in this process; it must fail with exit 2 and one ``edgelab:`` line."""
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgelab: "), err
    return lines[0]


# -- edgelab run: the flags --------------------------------------------------------------------
@needs_busybox
def test_function_flags_make_a_function_and_every_rung_that_applies(cat_wasm: Path) -> None:
    settings = settings_from_args(
        run_args("--wasm", str(cat_wasm), "--command", "busybox cat -", "--env", "GREETING=hi there", "--dir", f"{cat_wasm.parent}::/data")
    )
    function = settings.function
    assert function is not None
    assert settings.workload == "cat"  # the module's stem
    assert function.wasm == str(cat_wasm)
    assert function.command is not None and function.command[1:] == ("cat", "-")  # split, no shell
    assert os.path.isabs(function.command[0]) and os.path.basename(function.command[0]) == "busybox"
    assert function.env == (("GREETING", "hi there"),)
    assert function.dirs == ((str(cat_wasm.parent), "/data"),)
    # No -r: every rung whose artifact it gives (the module's and the command's), no container.
    wanted = tuple(s.name for s in registry.specs() if s.artifact in ("wasm", "native") and "command" in s.conventions)
    assert settings.runtimes == wanted and "wasm" in wanted and "subprocess" in wanted
    assert not any(name.startswith("container") for name in settings.runtimes)
    assert settings.as_json()["function"]["env"] == ["GREETING"]  # names only: values may be secrets


@needs_busybox
def test_the_display_name_is_the_modules_stem_else_the_image_else_the_program() -> None:
    from edgelab.functions import display_name
    from edgelab.workloads import Function

    assert display_name(Function(wasm="/x/app.wasm", image="me/app:1", command=("/bin/busybox",))) == "app"
    assert display_name(Function(image="me/app:1", command=("/bin/busybox",))) == "me/app:1"
    settings = settings_from_args(run_args("--command", "busybox sha256sum", "-r", "subprocess", "-n", "3"))
    assert settings.workload == "busybox" and settings.runtimes == ("subprocess",) and settings.count == 3


@needs_busybox
def test_a_rung_that_does_not_apply_is_one_line_not_a_silent_drop(capsys: pytest.CaptureFixture[str]) -> None:
    line = fails(["run", "--command", "busybox cat", "-r", "subprocess,wasm"], capsys)
    assert line == "edgelab: -r wasm does not apply to busybox: needs --wasm, which this function does not give"
    line = fails(["run", "--command", "busybox cat", "-r", "isolate"], capsys)
    assert "-r isolate does not apply to busybox: runs abi workloads, not command ones" in line
    # Typed out, the default selection is a -r like any other: its container rung is refused.
    line = fails(["run", "--command", "busybox cat", "-r", "container,subprocess,wasm"], capsys)
    assert "-r container does not apply to busybox: needs --image" in line


@needs_busybox
def test_invoke_on_a_rung_a_saved_function_does_not_give_is_one_line(workloads_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["add", "sha", "--command", "busybox sha256sum"]) == 0
    capsys.readouterr()
    line = fails(["invoke", "sha", "-r", "container"], capsys)
    assert line == "edgelab: -r container does not apply to sha: needs --image, which this function does not give"


@needs_busybox
@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["-w", "fib", "--command", "busybox cat"], "-w fib and --wasm/--image/--command both name what to run"),
        (["--command", "busybox cat", "--dir", "::/data"], "--dir '::/data' names no host directory"),
        (["--command", "busybox cat", "--dir", "/nonexistent-h8::/data"], "--dir /nonexistent-h8::/data: /nonexistent-h8 is not a directory"),
        (["--command", "busybox cat", "--env", "=v"], "--env '=v' names no variable"),
        (["--command", "busybox cat", "--env", "H8_SURELY_UNSET_VARIABLE"], "H8_SURELY_UNSET_VARIABLE is not set here"),
        (["--dir", "/tmp::/t"], "--dir and --env grant a function: give it with --wasm, --image or --command"),
        (["--command", ""], "--command is empty"),
        (["--command", "'unclosed"], "No closing quotation"),
        (["--command", "h8-no-such-program --flag"], "--command: h8-no-such-program not found on PATH"),
        (["--command", "/etc/passwd"], "--command: /etc/passwd is not executable"),
        (["--command", "/tmp"], "--command: /tmp is a folder, not a program"),
    ],
)
def test_bad_function_flags_are_one_line_and_exit_2(argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert expected in fails(["run", *argv, "--no-history"], capsys)


def test_a_file_that_is_not_wasm_or_a_component_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "notes.wasm"
    text.write_text("hello\n")
    assert "is not a WebAssembly module" in fails(["run", "--wasm", str(text)], capsys)
    component = tmp_path / "comp.wasm"
    component.write_bytes(b"\0asm\x0d\x00\x01\x00")
    assert "component" in fails(["run", "--wasm", str(component)], capsys)
    assert "no such file" in fails(["run", "--wasm", str(tmp_path / "absent.wasm")], capsys)


# -- edgelab add ----------------------------------------------------------------------------------
@needs_busybox
def test_add_saves_a_folder_the_lab_lists(cat_wasm: Path, workloads_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grant = tmp_path / "granted"
    grant.mkdir()
    code = cli.main(
        ["add", "mycat", "--wasm", str(cat_wasm), "--command", "busybox cat", "--env", "A=1 2", "--dir", f"{grant}::/g",
         "--request", 'say "hi"', "--description", "copies its request"]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert user_workloads_dir() == workloads_dir
    folder = workloads_dir / "mycat"
    assert sorted(p.name for p in folder.iterdir()) == ["cat.wasm", "workload.toml"]
    assert (folder / "cat.wasm").read_bytes() == cat_wasm.read_bytes()  # a copy, not a link
    assert [p.name for p in workloads_dir.iterdir()] == ["mycat"]  # no staging folder left
    text = (folder / "workload.toml").read_text()
    assert 'kind = "function"' in text and 'wasm = "cat.wasm"' in text  # relative: resolves against the folder
    saved = load_manifest(folder / "workload.toml")
    assert saved.kind == "function" and saved.convention == "command" and saved.sources == ()
    assert saved.function is not None and saved.function.wasm == str(folder / "cat.wasm")
    assert saved.function.command is not None and saved.function.command[1:] == ("cat",)
    assert saved.function.env == (("A", "1 2"),) and saved.function.dirs == ((str(grant), "/g"),)
    assert saved.default_request == b'say "hi"' and saved.description == "copies its request"
    assert saved.max_request_bytes == 16 << 20 and saved.timeout_s == 10.0 and saved.memory_limit_bytes == 256 << 20
    listed = load_workloads()
    assert "hello" in listed and listed["mycat"].function == saved.function  # beside the built-ins
    assert get_workload("mycat").kind == "function"
    # A saved function runs by name, on the rungs that apply to it.
    settings = settings_from_args(run_args("-w", "mycat"))
    assert settings.function is None and settings.workload == "mycat"
    assert "wasm" in settings.runtimes and "subprocess" in settings.runtimes and "container" not in settings.runtimes
    # The second add of that name, and a built-in's name, are refused; nothing changes.
    assert "workload 'mycat' exists already" in fails(["add", "mycat", "--command", "busybox cat"], capsys)
    assert "'hello' is a built-in workload's" in fails(["add", "hello", "--command", "busybox cat"], capsys)
    assert "--dir /nonexistent-h8::/g: /nonexistent-h8 is not a directory" in fails(
        ["add", "other", "--command", "busybox cat", "--dir", "/nonexistent-h8::/g"], capsys
    )
    assert "workload name '../x'" in fails(["add", "../x", "--command", "busybox cat"], capsys)
    assert "needs an artifact" in fails(["add", "bare"], capsys)
    assert [p.name for p in workloads_dir.iterdir()] == ["mycat"]
    assert (folder / "workload.toml").read_text() == text


def test_add_leaves_nothing_when_the_copy_fails(cat_wasm: Path, workloads_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def no_space(src: object, dst: object, **_: object) -> None:
        Path(str(dst)).write_bytes(b"\0as")  # half a copy, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", no_space)
    code = cli.main(["add", "half", "--wasm", str(cat_wasm)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err == f"edgelab: cannot save half in {workloads_dir}: No space left on device (nothing was saved)"
    assert list(workloads_dir.iterdir()) == []  # neither the folder nor its staging copy
    assert "half" not in load_workloads()


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("", "needs a [function] section"),
        ("[function]\n", "gives no artifact"),
        ('[function]\ncommand = "cat"\n', "command must be a list"),
        ('[function]\nwasm = "absent.wasm"\n', "wasm absent.wasm does not exist"),
        ('[function]\ncommand = ["cat"]\nenv = ["NOVALUE"]\n', "env: 'NOVALUE' has no value"),
        ('[function]\ncommand = ["cat"]\nflavour = 1\n', "unknown field 'flavour'"),
        ('sources = ["a.c"]\n[function]\ncommand = ["cat"]\n', "a function workload has no 'sources'"),
    ],
)
def test_a_malformed_function_manifest_is_one_line_naming_it(tmp_path: Path, section: str, expected: str) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    head = 'name = "bad"\nkind = "function"\ndescription = "x"\ndefault_request = ""\n'
    limits = "max_request_bytes = 1024\ntimeout_s = 5\nmemory_limit_mib = 64\n"
    (folder / "workload.toml").write_text(head + limits + section)
    with pytest.raises(ManifestError, match="bad/workload.toml: ") as caught:
        load_manifest(folder / "workload.toml")
    assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_a_saved_folder_may_not_shadow_a_built_in(workloads_dir: Path) -> None:
    folder = workloads_dir / "hello"
    folder.mkdir(parents=True)
    (folder / "workload.toml").write_text(
        'name = "hello"\nkind = "function"\ndescription = "x"\ndefault_request = ""\n'
        'max_request_bytes = 1024\ntimeout_s = 5\nmemory_limit_mib = 64\n[function]\ncommand = ["/bin/true"]\n'
    )
    with pytest.raises(ManifestError, match="the name 'hello' is a built-in workload's"):
        load_workloads()


# -- printing and exports of a function's run -------------------------------------------------
def _function_result() -> RunResult:
    """A fixed run of a function on two rungs whose answers differ at byte 3 (no runtime)."""
    runtimes = {}
    for name, startup, exit_ns in (("wasm", 40_000, 90_000), ("subprocess", 400_000, 900_000)):
        r = RuntimeResult(runtime=name, startup_includes="test figures", memory_metric="PSS")
        r.samples = [Sample(name, i, False, True, startup + i, {}, response_bytes=4, exit_ns=exit_ns + i) for i in range(3)]
        runtimes[name] = r
    metadata = {
        "workload": {"name": "cat", "description": "your function (wasm, native)"},
        "settings": {"workload": "cat", "scenario": "burst", "function": {"wasm": "/w/cat.wasm", "image": None, "command": ["/bin/busybox", "cat"], "dirs": ["/tmp::/t"], "env": ["A"]}},
        "host": {"cpu_model": "test cpu", "cpu_cores_logical": 2},
        "versions": {"edgelab": "test"},
        "started": "2026-12-02T04:00:00+00:00",
        "responses_identical": False,
        "response_differences": [{"runtime": "subprocess", "against": "wasm", "first_differing_byte": 3, "bytes": 5, "against_bytes": 4}],
        "artifacts": {"wasm": {"path": "/w/cat.wasm", "size_bytes": 260, "built": True}, "native": {"path": "/bin/busybox", "size_bytes": 2_000_000, "built": True},
                      "image": {"tag": "me/[bold]x:cat:", "size_bytes": 2_000_000, "built": True}},
    }
    return RunResult(metadata, runtimes)


def test_a_function_run_prints_first_stdout_byte_exit_sizes_grants_and_the_difference() -> None:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=200, color_system=None)
    print_result(_function_result(), console)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "cat: cold start = launch → first stdout byte" in text
    assert "exit p50 (launch → exit): wasm 90.0 µs · subprocess 900 µs" in text
    assert "module /w/cat.wasm: 260 B (260 bytes)" in text and "binary /bin/busybox: 1.9 MiB (2,000,000 bytes)" in text
    assert "image me/[bold]x:cat:: 1.9 MiB" in text  # a person's tag as it is: no markup, no emoji
    assert "grants: dirs /tmp::/t; env A" in text
    assert "subprocess answered 5 bytes, wasm 4 bytes: first differing byte at offset 3" in text


def test_function_exports_carry_exit_time_sizes_and_differences() -> None:
    result = _function_result()
    rows = list(csv.DictReader(io.StringIO(to_csv(result))))
    header = to_csv(result).splitlines()[0].split(",")
    assert header[-1] == "exit_us" and header[:5] == ["runtime", "index", "warmup", "ok", "startup_us"]  # appended
    assert rows[0]["exit_us"] == "90.000" and rows[3]["exit_us"] == "900.000"
    data = json.loads(to_json(result))
    by_name = {r["runtime"]: r for r in data["results"]}
    assert by_name["wasm"]["exit_us"]["p50"] == pytest.approx(90.001)
    assert by_name["wasm"]["artifact"] == {"kind": "wasm", "path": "/w/cat.wasm", "size_bytes": 260, "built": True}
    assert by_name["subprocess"]["artifact"]["size_bytes"] == 2_000_000
    assert data["metadata"]["response_differences"][0]["first_differing_byte"] == 3
    markdown = to_markdown(result)
    assert "| error | exit p50 |" in markdown and "startup = launch to its first stdout byte" in markdown
    assert "| 90.0 µs |" in next(line for line in markdown.splitlines() if line.startswith("| wasm"))
    assert "- subprocess answered 5 bytes, wasm 4 bytes: first differing byte at offset 3" in markdown


def test_a_built_in_run_keeps_its_title_and_has_no_exit_column() -> None:
    from rich.console import Console

    result = _function_result()
    for key in ("artifacts", "response_differences"):
        result.metadata.pop(key)
    result.metadata["settings"]["function"] = None
    result.metadata["responses_identical"] = True
    for r in result.runtimes.values():
        r.samples = [Sample(s.runtime, s.index, False, True, s.startup_ns, {}, response_bytes=4) for s in r.samples]
    console = Console(file=io.StringIO(), width=200, color_system=None)
    print_result(result, console)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "cat: cold start = launch call → first response byte" in text and "exit p50" not in text
    assert to_csv(result).splitlines()[1].endswith(",")  # the exit_us cell is empty

