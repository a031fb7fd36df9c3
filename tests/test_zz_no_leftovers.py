"""Runs last (file order): after the whole suite nothing the lab started may remain."""

import time

import psutil


def test_no_child_process_remains() -> None:
    deadline = time.monotonic() + 5
    children = psutil.Process().children(recursive=True)
    while children and time.monotonic() < deadline:
        time.sleep(0.1)
        children = [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    assert children == [], f"processes left behind: {[(c.pid, c.name()) for c in children]}"


def test_no_labelled_container_remains(docker_client) -> None:  # type: ignore[no-untyped-def]
    left = docker_client.containers.list(all=True, filters={"label": "edgelab.session"})
    assert left == [], f"containers left behind: {[c.short_id for c in left]}"
