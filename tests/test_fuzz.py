"""Fuzzing the protocol: the parser in-process (hypothesis), then the full socket path of a
real daemon. Every message is answered with an error or a proper reply, or dropped by a
documented rule (oversized: ZeroMQ disconnects); the daemon never dies."""

from __future__ import annotations

import json
import random

import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paintbridge.plugin import protocol
from paintbridge.plugin.protocol import Limits, ProtocolError

from .conftest import DaemonProc

LIMITS = Limits(max_pixels=256 * 256)

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-2**40, 2**40),
                         st.floats(allow_nan=False), st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12)
frame_specs = st.fixed_dictionaries({
    "role": st.sampled_from(["image", "mask", "x", ""]),
    "width": st.one_of(st.integers(-2, 300), json_scalars),
    "height": st.one_of(st.integers(-2, 300), json_scalars),
    "format": st.sampled_from([*protocol.FORMATS, "png", ""]),
})
params = st.dictionaries(st.sampled_from(["prompt", "strength", "steps", "guidance", "seed",
                                          "count", "sampler", "model", "grow", "feather",
                                          "padding", "bogus"]), json_values, max_size=6)
headers = st.fixed_dictionaries(
    {"v": st.one_of(st.just(1), json_scalars), "op": st.sampled_from([*protocol.REQUEST_OPS,
                                                                     "nope"])},
    optional={"job": st.one_of(st.text(max_size=70), json_scalars),
              "kind": st.sampled_from([*protocol.KINDS, "x"]), "params": params,
              "frames": st.lists(frame_specs, max_size=5), "offset": json_values,
              "size": json_values, "result_format": json_values, "preview": json_values})


def parse(raw: bytes, buffers: list[bytes]) -> None:
    header = protocol.decode_header(raw, LIMITS)
    if header.get("op") == "submit":
        protocol.parse_submit(header, buffers, LIMITS)


@settings(max_examples=400, deadline=None, suppress_health_check=list(HealthCheck))
@given(headers, st.lists(st.binary(max_size=64), max_size=5))
def test_parser_raises_only_protocol_errors(header: dict, buffers: list[bytes]) -> None:
    try:
        parse(json.dumps(header).encode(), buffers)
    except ProtocolError as exc:
        assert exc.code and exc.message


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=200))
def test_parser_survives_random_bytes(raw: bytes) -> None:
    try:
        parse(raw, [])
    except ProtocolError:
        pass


def random_message(rng: random.Random) -> list[bytes]:
    """A mutated valid request, raw noise, or a header with a wrong payload."""
    base = {"v": 1, "op": rng.choice([*protocol.REQUEST_OPS, "zap"]), "job": f"f{rng.random()}",
            "kind": rng.choice(protocol.KINDS),
            "params": {"steps": rng.choice([1, 2, 0, -1, 1e9, "x"]), "count": 1},
            "frames": [{"role": rng.choice(["image", "mask"]), "width": rng.randint(-1, 40),
                        "height": rng.randint(-1, 40),
                        "format": rng.choice([*protocol.FORMATS, "bad"])}
                       for _ in range(rng.randint(0, 3))]}
    raw = json.dumps(base).encode()
    choice = rng.random()
    if choice < 0.3:   # flip bytes in the header
        b = bytearray(raw)
        for _ in range(rng.randint(1, 5)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        raw = bytes(b)
    elif choice < 0.4:
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(0, 50)))
    frames = [bytes(rng.randint(0, 4 * 40 * 40)) for _ in range(rng.randint(0, 4))]
    return [raw, *frames]


def test_socket_fuzz_daemon_survives(daemon: DaemonProc) -> None:
    """Random and mutated multipart messages over the real socket: each gets a reply (mostly
    errors; a rare valid submit gets accepted and is cancelled), the daemon keeps serving."""
    rng = random.Random(1234)
    s = zmq.Context.instance().socket(zmq.DEALER)
    s.setsockopt(zmq.LINGER, 0)
    s.connect(daemon.endpoint)
    answered = 0
    try:
        for _ in range(400):
            s.send_multipart(random_message(rng))
            assert s.poll(10000), "the daemon stopped answering"
            reply = json.loads(s.recv_multipart()[0])
            answered += 1
            if reply.get("event") == "accepted":
                s.send_multipart([json.dumps({"v": 1, "op": "cancel",
                                              "job": reply["job"]}).encode()])
            # drain anything else (progress/cancelled of accepted jobs)
            while s.poll(0):
                s.recv_multipart()
        s.send_multipart([b'{"v": 1, "op": "hello"}'])
        assert s.poll(10000)
        while True:
            header = json.loads(s.recv_multipart()[0])
            if header.get("event") == "hello":
                break
    finally:
        s.close()
    assert answered == 400 and daemon.proc.poll() is None
