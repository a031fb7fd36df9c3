"""The capability matrix on the real runtimes: what the same probe source can reach in each.

Wasm (no imports) can do nothing; the container (read-only FROM-scratch rootfs, network none)
can neither reach the network nor write; the native process is a plain process and reads the
host's files: that difference is what the matrix exists to show.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from edgelab.capabilities import CAPABILITIES, parse_probe_answer, probe_matrix


@pytest.fixture(scope="module")
def matrix(docker_client: Any) -> dict[str, dict[str, str]]:
    return probe_matrix()


def test_wasm_is_denied_everything(matrix: dict[str, dict[str, str]]) -> None:
    assert matrix["wasm"] == {cap: "denied" for cap in CAPABILITIES}


def test_container_denies_network_and_writes(matrix: dict[str, dict[str, str]]) -> None:
    assert matrix["container"]["network"] == "denied"
    assert matrix["container"]["write_file"] == "denied"
    assert matrix["container"]["read_file"] == "denied"  # /etc/passwd is not in a scratch image


def test_subprocess_is_a_plain_process(matrix: dict[str, dict[str, str]]) -> None:
    assert matrix["subprocess"]["read_file"] == "allowed"
    assert matrix["subprocess"]["list_root"] == "allowed"
    assert matrix["subprocess"]["read_env"] == "denied"  # spawned with an empty environment
    assert set(matrix["subprocess"].values()) <= {"allowed", "denied"}


def test_parse_probe_answer() -> None:
    body = b"read_file=denied (no import)\nnetwork=allowed (connected)\nnoise\n"
    assert parse_probe_answer(body) == {
        "read_file": ("denied", "no import"),
        "network": ("allowed", "connected"),
    }


def test_probe_command_json() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "edgelab", "probe", "--json", "--runtimes", "wasm,subprocess"],
        capture_output=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr.decode()
    data = json.loads(done.stdout)
    assert set(data) == {"wasm", "subprocess"}
    assert all(data["wasm"][cap] == {"verdict": "denied", "detail": "no import"} for cap in CAPABILITIES)
    assert data["subprocess"]["write_file"]["verdict"] == "allowed"
    assert not [p for p in os.listdir("/tmp") if p.startswith("edgelab-probe-")]
