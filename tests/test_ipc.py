"""The one IPC channel: frames cross whole, only frozen dataclasses cross, deadlines hold."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

import pytest

from edgelab.ipc import Call, Channel, ChannelClosed, ChannelTimeout, Err, Ok, encode, take_frames


@dataclass(frozen=True)
class Big:
    payload: bytes


@dataclass
class Mutable:
    x: int


def _pair() -> tuple[Channel, Channel]:
    a_r, b_w = os.pipe()
    b_r, a_w = os.pipe()
    return Channel(a_r, a_w), Channel(b_r, b_w)


def test_call_pairs_a_reply_with_its_request_across_a_thread() -> None:
    client, server = _pair()

    def serve() -> None:
        call = server.recv()
        server.send(Ok((call.command, call.args)))

    thread = threading.Thread(target=serve)
    thread.start()
    assert client.call(Call("launch", ("hello", 3)), 5) == Ok(("launch", ("hello", 3)))
    thread.join()


def test_a_frame_larger_than_a_pipe_buffer_crosses_whole() -> None:
    client, server = _pair()
    payload = os.urandom(5 << 20)
    thread = threading.Thread(target=lambda: server.send(Big(payload)))
    thread.start()
    assert client.recv(time.monotonic() + 10) == Big(payload)
    thread.join()


def test_only_frozen_dataclasses_cross() -> None:
    client, _server = _pair()
    for bad in (("launch", 1), Mutable(1), Ok):
        with pytest.raises(TypeError, match="frozen dataclass"):
            client.send(bad)


def test_a_silent_peer_is_a_timeout_and_a_closed_one_is_closed() -> None:
    client, server = _pair()
    started = time.monotonic()
    with pytest.raises(ChannelTimeout):
        client.call(Call("ping"), 0.2)
    assert time.monotonic() - started < 2
    server.close()
    with pytest.raises(ChannelClosed):
        client.recv(time.monotonic() + 2)


def test_take_frames_leaves_an_incomplete_frame_behind() -> None:
    frames = encode(Err("limit", "pool full")) + encode(Ok(1))
    pending = bytearray(frames + encode(Ok(2))[:5])
    assert take_frames(pending) == [Err("limit", "pool full"), Ok(1)]
    assert len(pending) == 5
