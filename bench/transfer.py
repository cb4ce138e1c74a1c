"""Transfer: RGBA8 layers through the daemon (raw ZeroMQ frames) vs PNG+base64 JSON over HTTP.

Why: hosts send and receive whole layers; the A1111/ComfyUI way (PNG-encode, base64, JSON,
HTTP, and the same back) costs seconds per large layer, raw frames should cost about what
copying the bytes costs. Three round trips of the same photo-like pixels:

- zmq: Client.echo through a real daemon on tcp loopback; ends with the bytes back in
  the client's memory.
- png: client PNG-encodes (PIL default compression) + base64 into a JSON body, POSTs it to
  a stdlib HTTP server in another process, which decodes, re-encodes PNG + base64 and
  answers JSON; the client decodes that back to RGBA pixels.
- memcpy: the same bytes copied there and back (2 copies): into fresh buffers (bytearray,
  malloc'd like a received ZeroMQ message: a received layer lands in new memory), and,
  stricter, into warm preallocated numpy buffers (no page faults: pure copy bandwidth).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import base64  # noqa: E402
import http.client  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer  # noqa: E402
from typing import Any  # noqa: E402

import common  # noqa: E402
import numpy as np  # noqa: E402
from common import Row  # noqa: E402

from paintbridge.plugin.client import Client, Frame  # noqa: E402

SIDES = (1024, 2048, 4096)
# repetitions (full, quick) per side; PNG at 4096² takes ~15 s a round trip on 2 cores
REPS = {"zmq": {1024: (30, 8), 2048: (15, 5), 4096: (9, 3)},
        "png": {1024: (5, 2), 2048: (3, 1), 4096: (3, 1)}}
TARGET_SIDE = 4096
PNG_TARGET = 20.0     # PNG round trip / ZMQ round trip, at least
MEMCPY_TARGET = 3.0   # ZMQ round trip / memcpy there and back, at most


# --------------------------------------------------------------------------- HTTP (A1111 way)


def png_b64(pixels: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels, "RGBA").save(buf, "PNG")  # PIL's default compression
    return base64.b64encode(buf.getvalue()).decode("ascii")


def unpng_b64(text: str) -> np.ndarray:
    from PIL import Image

    img = Image.open(io.BytesIO(base64.b64decode(text)))
    img.load()
    return np.asarray(img)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the clients' sessions do

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        pixels = unpng_b64(body["images"][0])
        reply = json.dumps({"images": [png_b64(pixels)]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        pass


def serve_http() -> None:
    """The server process: prints its port, serves until stdin closes (the parent exits)."""
    import threading

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(server.server_address[1], flush=True)
    sys.stdin.read()
    server.shutdown()


class HttpPeer:
    """An A1111-style client talking to the server process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--http-server"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        port = int(self.proc.stdout.readline())
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
        self.last_body = 0  # bytes of the last request body (the PNG's size, base64'd)

    def round_trip(self, pixels: np.ndarray) -> np.ndarray:
        body = json.dumps({"images": [png_b64(pixels)]}).encode()
        self.last_body = len(body)
        self.conn.request("POST", "/sdapi/v1/echo", body, {"Content-Type": "application/json"})
        reply = self.conn.getresponse()
        if reply.status != 200:
            raise RuntimeError(f"HTTP {reply.status}")
        return unpng_b64(json.loads(reply.read())["images"][0])

    def close(self) -> None:
        self.conn.close()
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)


# --------------------------------------------------------------------------- the benchmark


def bench_side(side: int, client: Client, http: HttpPeer, quick: bool) -> dict[str, Any]:
    pixels = common.photo_like(side, side, seed=side)
    data = pixels.tobytes()
    frame = Frame(side, side, "rgba8", data)
    pick = 1 if quick else 0

    # correctness first, outside the timings: both paths give back the same bytes
    assert bytes(client.echo([frame], timeout=120)[0]) == data, "echo changed the bytes"
    back = http.round_trip(pixels)
    assert back.shape == pixels.shape and bytes(back.data) == data, "PNG path is not lossless"

    zmq_s, fresh_s, warm_s = [], [], []
    src = np.frombuffer(data, np.uint8)
    a, b = np.empty_like(src), np.empty_like(src)
    for _ in range(REPS["zmq"][side][pick] + 1):  # interleaved: same load for all three
        zmq_s.append(common.timed(lambda: client.echo([frame], timeout=120))[0])
        fresh_s.append(common.timed(lambda: bytearray(bytearray(data)))[0])
        warm_s.append(common.timed(lambda: (np.copyto(a, src), np.copyto(b, a)))[0])
    zmq_s, fresh_s, warm_s = zmq_s[1:], fresh_s[1:], warm_s[1:]  # first round: warm-up
    png_s = [common.timed(lambda: http.round_trip(pixels))[0]
             for _ in range(REPS["png"][side][pick])]
    return {"side": side, "raw_bytes": len(data), "json_body_bytes": http.last_body,
            "json_body_over_raw": http.last_body / len(data),
            "zmq": common.summary(zmq_s), "png_json_http": common.summary(png_s),
            "memcpy_fresh": common.summary(fresh_s), "memcpy_warm": common.summary(warm_s)}


def run(quick: bool) -> tuple[dict[str, Any], list[Row]]:
    sizes: list[dict[str, Any]] = []
    http = HttpPeer()
    try:
        with common.daemon("--no-embedded") as d, Client(d.endpoint) as client:
            for side in SIDES:
                print(f"transfer: {side}x{side} ...", flush=True)
                sizes.append(bench_side(side, client, http, quick))
    finally:
        http.close()
    rows: list[Row] = []
    for s in sizes:
        med = {k: s[k]["median_s"] for k in ("zmq", "png_json_http", "memcpy_fresh",
                                             "memcpy_warm")}
        s["ratios"] = {"png_over_zmq": med["png_json_http"] / med["zmq"],
                       "zmq_over_memcpy_fresh": med["zmq"] / med["memcpy_fresh"],
                       "zmq_over_memcpy_warm": med["zmq"] / med["memcpy_warm"]}
        n, r, at_target = s["side"], s["ratios"], s["side"] == TARGET_SIDE
        rows += [
            Row(f"{n}² zmq echo round trip", common.ms(med["zmq"])),
            Row(f"{n}² png+base64 json/http round trip", common.ms(med["png_json_http"])),
            Row(f"{n}² memcpy x2 (fresh buffers)", common.ms(med["memcpy_fresh"])),
            Row(f"{n}² memcpy x2 (warm buffers)", common.ms(med["memcpy_warm"])),
            Row(f"{n}² png/zmq", common.ratio(r["png_over_zmq"]),
                f">= {PNG_TARGET:g}x" if at_target else "",
                r["png_over_zmq"] >= PNG_TARGET if at_target else None),
            Row(f"{n}² zmq/memcpy (fresh)", common.ratio(r["zmq_over_memcpy_fresh"]),
                f"<= {MEMCPY_TARGET:g}x" if at_target else "",
                r["zmq_over_memcpy_fresh"] <= MEMCPY_TARGET if at_target else None),
            Row(f"{n}² zmq/memcpy (warm, stricter)", common.ratio(r["zmq_over_memcpy_warm"])),
        ]
    return {"quick": quick, "sizes": sizes}, rows


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--http-server"]:
        serve_http()
        return 0
    args = common.parse_args(__doc__.splitlines()[0], argv)
    data, rows = run(args.quick)
    common.print_table("transfer (median of N round trips)", rows)
    print(f"wrote {common.write_json(args.out, 'transfer', data, rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
