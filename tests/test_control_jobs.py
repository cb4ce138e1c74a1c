"""Control layers in jobs, through a real daemon, proven on the ControlNet trained here.

``backend/default_controlnets/shapes-scribble`` (``make train-control-sample``) was trained for the
embedded model on the outlines of the procedural shapes. So a test can check what a control
*does*: with a prompt that names a colour and no shape, the outline decides which shape is
painted and where (its IoU with the outlined shape), while the same seeds without the
control paint something that overlaps the outline only by chance. The tiny random models
check the rest: an original-layout single file (``control_model.*``) loads offline and
steers regular and inpainting checkpoints in every job kind, and bad control input is
refused with the field named while the daemon keeps serving.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from paintbridge.plugin.client import Client, DaemonError, Frame, Job, JobRequest, JobState
from paintbridge.plugin.protocol import ErrorCode
from tools.training import data
from tools.training.control import control_map, shape_iou

from .conftest import DaemonProc, TinyModels, start_daemon

SIDE = 64


@pytest.fixture(scope="module")
def daemon(tiny_models: TinyModels, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[DaemonProc]:
    """The embedded model and its shipped ControlNet; the tiny models with a random
    original-layout ControlNet, and a broken file."""
    from tools.tiny_models import save_tiny_controlnet

    root = tmp_path_factory.mktemp("control-jobs")
    nets = root / "ControlNet"
    save_tiny_controlnet("v1", nets / "tiny_sd15_canny.safetensors")
    good = (nets / "tiny_sd15_canny.safetensors").read_bytes()
    (nets / "broken_scribble.safetensors").write_bytes(good[: len(good) // 3])
    d = start_daemon(root, "--models", str(tiny_models.models_dir), "--controlnets", str(nets),
                     "--default-model", "default")
    yield d
    d.stop()


@pytest.fixture
def client(daemon: DaemonProc) -> Iterator[Client]:
    with Client(daemon.endpoint) as c:
        c.hello()
        yield c


def _rgba(rgb: np.ndarray) -> Frame:
    px = np.concatenate([rgb, np.full((*rgb.shape[:2], 1), 255, np.uint8)], axis=2)
    return Frame(px.shape[1], px.shape[0], "rgba8", np.ascontiguousarray(px).tobytes())


def outline_layer(kind: str, box: tuple[int, int, int, int]) -> Frame:
    """What an artist draws on a control layer: dark strokes on a transparent layer."""
    lines = control_map([data.Shape(kind, "black", box)])[..., 0] > 0
    px = np.zeros((SIDE, SIDE, 4), np.uint8)
    px[lines] = (20, 20, 20, 255)
    return Frame(SIDE, SIDE, "rgba8", px.tobytes())


def run(client: Client, kind: str, params: dict, controls: list[Frame] = (),
        image: Frame | None = None, mask: Frame | None = None, timeout: float = 240) -> Job:
    job = client.submit(JobRequest(kind, params, image=image, mask=mask,
                                   size=(SIDE, SIDE) if image is None and mask is None else None,
                                   controls=list(controls)))
    client.wait(job, timeout=timeout)
    return job


def pixels(job: Job, under: np.ndarray | None = None) -> np.ndarray:
    """The result laid over ``under`` (a new layer over the page), RGB."""
    assert job.state is JobState.DONE, (job.error_code, job.error_message)
    p = job.patches[0]
    patch = np.frombuffer(p.data, np.uint8).reshape(p.height, p.width, 4).astype(np.float32)
    out = (np.zeros((SIDE, SIDE, 3), np.float32) if under is None
           else under.astype(np.float32).copy())
    a = patch[..., 3:] / 255
    ys, xs = slice(p.y, p.y + p.height), slice(p.x, p.x + p.width)
    out[ys, xs] = patch[..., :3] * a + out[ys, xs] * (1 - a)
    return np.rint(out).astype(np.uint8)


#: (shape, colour, box, background): one case per shape and place
CASES = [("triangle", "red", (8, 6, 40, 38), "white"),
         ("square", "blue", (26, 24, 54, 52), "white"),
         ("circle", "yellow", (12, 28, 42, 58), "purple"),
         ("triangle", "blue", (30, 10, 58, 38), "white"),
         ("square", "red", (6, 8, 32, 34), "black"),
         ("circle", "red", (28, 6, 58, 36), "white")]


def test_the_outline_decides_the_shape_and_where_it_goes(client: Client) -> None:
    """Text to image with 'a red shape on a white background': the outline's shape is
    painted where the outline is; without it, the same seeds overlap it by chance."""
    rows = []
    for i, (kind, colour, box, bg) in enumerate(CASES):
        prompt = f"{data.article(colour)} {colour} shape on {data.article(bg)} {bg} background"
        params = {"prompt": prompt, "seed": 100 + i}
        steered = pixels(run(client, "txt2img", {**params, "controls": [{"type": "scribble"}]},
                             [outline_layer(kind, box)]))
        free = pixels(run(client, "txt2img", params))
        rows.append((kind, *shape_iou(steered, colour, kind, box),
                     shape_iou(free, colour, kind, box)[0]))
    with_iou = [r[1] for r in rows]
    without_iou = [r[3] for r in rows]
    shapes_hit = [r[0] == r[2] for r in rows]
    assert np.mean(with_iou) >= 0.6, rows
    assert min(with_iou) >= 0.35, rows
    assert sum(shapes_hit) >= 4, rows
    assert np.mean(without_iou) <= 0.35, rows
    assert np.mean(with_iou) - np.mean(without_iou) >= 0.3, rows


def test_inpaint_and_img2img_follow_the_outline(client: Client) -> None:
    white = np.full((SIDE, SIDE, 3), data.COLOURS["white"], np.uint8)
    mask = np.zeros((SIDE, SIDE), np.uint8)
    mask[4:44, 4:44] = 255
    box = (8, 8, 40, 40)
    control = [{"type": "scribble"}]
    inpainted = pixels(run(client, "inpaint", {"prompt": "a green shape", "seed": 5,
                                               "controls": control},
                           [outline_layer("triangle", box)], image=_rgba(white),
                           mask=Frame(SIDE, SIDE, "gray8", mask.tobytes())), white)
    iou, shape = shape_iou(inpainted, "green", "triangle", box)
    assert iou >= 0.5 and shape == "triangle", (iou, shape)
    assert (inpainted[50:, 50:] > 200).all()   # outside the selection: the white page


def test_an_original_layout_single_file_steers_regular_and_inpainting_models(
        client: Client, daemon: DaemonProc) -> None:
    """The tiny SD1 ControlNet, in lllyasviel's control_model.* layout, found in a
    ControlNet folder and loaded offline: every job kind on the regular tiny model, inpaint
    on the inpainting one; strength 0 gives another picture than strength 1."""
    listed = {n["name"]: n for n in client.request("models")[0]["controlnets"]}
    assert listed["tiny_sd15_canny"]["layout"] == "original"
    assert listed["tiny_sd15_canny"]["type"] == "canny" and listed["tiny_sd15_canny"]["usable"]
    assert "broken_scribble" in listed and not listed["broken_scribble"]["usable"]
    square = np.zeros((SIDE, SIDE, 3), np.uint8)
    square[16:48, 16:48] = 255
    hint = _rgba(square)
    image = _rgba(np.full((SIDE, SIDE, 3), 128, np.uint8))
    mask = np.zeros((SIDE, SIDE), np.uint8)
    mask[8:56, 8:56] = 255
    sel = Frame(SIDE, SIDE, "gray8", mask.tobytes())
    outs = {}
    for model, kind in (("tiny-v1", "txt2img"), ("tiny-v1", "img2img"), ("tiny-v1", "inpaint"),
                        ("tiny-inpainting", "inpaint")):
        for strength in (1.0, 0.0):
            params = {"prompt": "a square", "model": model, "seed": 3, "steps": 4,
                      "controls": [{"type": "canny", "strength": strength}]}
            job = run(client, kind, params, [hint],
                      image=None if kind == "txt2img" else image,
                      mask=sel if kind == "inpaint" else None)
            outs[model, kind, strength] = pixels(job)
        assert not np.array_equal(outs[model, kind, 1.0], outs[model, kind, 0.0]), (model, kind)
    assert "tiny_sd15_canny" in daemon.output()


def test_two_controls_at_once(client: Client) -> None:
    box = (10, 10, 50, 50)
    one = [{"type": "scribble"}]
    two = one + [{"type": "scribble", "strength": 0.6, "start": 0.2, "end": 0.8}]
    params = {"prompt": "a red shape", "seed": 9}
    single = pixels(run(client, "txt2img", {**params, "controls": one},
                        [outline_layer("square", box)]))
    double = pixels(run(client, "txt2img", {**params, "controls": two},
                        [outline_layer("square", box), outline_layer("circle", box)]))
    assert not np.array_equal(single, double)


@pytest.mark.parametrize("controls, frames, field, words", [
    ([{"type": "scribble", "model": "tiny_sd15_canny"}], 1, "controls",
     "is for unknown, cross-attention width 32; model 'default' is inpainting, "
     "cross-attention width 64"),
    ([{"type": "scribble", "model": "nope"}], 1, "controls", "unknown ControlNet 'nope'"),
    ([{"type": "scribble", "model": "broken_scribble"}], 1, "controls", "is not usable"),
    ([{"type": "depth"}], 1, "controls", "no depth ControlNet for model 'default'"),
    ([{"type": "wiggle"}], 1, "controls", "type 'wiggle' is unknown"),
    ([{"type": "depth", "preprocess": "depth_midas"}], 1, "controls", "annotator weights"),
    ([{"type": "scribble"}], 0, "controls", "but 0 'control' frame"),
])
def test_bad_control_input_is_refused_with_the_field_named(
        client: Client, controls: list, frames: int, field: str, words: str) -> None:
    header = {"v": 1, "op": "submit", "job": f"bad-{abs(hash(words))}", "kind": "txt2img",
              "params": {"prompt": "x", "controls": controls}, "size": [SIDE, SIDE],
              "frames": [{"role": "control", "width": SIDE, "height": SIDE,
                          "format": "rgba8"}] * frames}
    with pytest.raises(DaemonError) as err:
        client.request("submit", payload=[bytes(SIDE * SIDE * 4)] * frames,
                       **{k: v for k, v in header.items() if k not in ("v", "op", "job")})
    assert err.value.code in (ErrorCode.BAD_FIELD, ErrorCode.BAD_FRAME)
    assert words in err.value.message, err.value.message
    assert client.request("hello")[0]["default_model"] == "default"   # still serving


def test_a_control_frame_of_another_size_is_refused(client: Client) -> None:
    small = Frame(32, 32, "rgba8", bytes(32 * 32 * 4))
    with pytest.raises(DaemonError) as err:
        client.request("submit", payload=[small.data], kind="txt2img",
                       params={"prompt": "x", "controls": [{"type": "scribble"}]},
                       size=[SIDE, SIDE], frames=[small.spec("control").to_json()])
    assert err.value.code == ErrorCode.BAD_FRAME and "32x32" in err.value.message


def test_preprocess_returns_the_map_a_host_shows_as_a_layer(client: Client) -> None:
    square = np.zeros((SIDE, SIDE, 3), np.uint8)
    square[16:48, 16:48] = 255
    edges = client.preprocess(_rgba(square), control_type="canny")
    px = np.frombuffer(edges.data, np.uint8).reshape(SIDE, SIDE, 4)
    assert (edges.width, edges.height, edges.format) == (SIDE, SIDE, "rgba8")
    assert px[..., 3].min() == 255 and px[14:18, 20:40, 0].max(axis=0).min() == 255
    assert px[24:40, 24:40, 0].max() == 0
    scribble = client.preprocess(outline_layer("triangle", (8, 8, 40, 40)), "scribble")
    lines = np.frombuffer(scribble.data, np.uint8).reshape(SIDE, SIDE, 4)[..., 0] > 0
    assert 60 < lines.sum() < 400
    with pytest.raises(DaemonError, match="annotator weights"):
        client.preprocess(_rgba(square), "openpose")


def _big_control(side: int = 4096) -> Frame:
    """A canvas-sized control layer: seconds of canny on this machine."""
    ramp = np.add.outer(np.arange(side), np.arange(side)) % 251
    return Frame(side, side, "gray8", ramp.astype(np.uint8).tobytes())


def test_a_big_preprocess_keeps_other_clients_answered(daemon: DaemonProc) -> None:
    """A 4096² canny (seconds here) runs off the daemon's main thread: another client's
    hello, sent while it runs, is answered while it still runs; a flood of them is refused
    busy beyond the few that may wait, every request gets one answer, and the daemon
    keeps serving."""
    import threading

    frame = _big_control()
    spec = frame.spec("control").to_json()
    with Client(daemon.endpoint) as a, Client(daemon.endpoint) as b:
        a.hello()
        b.hello()
        rids = [a.send_request("preprocess", [frame.data], preprocess="canny", frames=[spec])
                for _ in range(3)]
        time.sleep(0.5)                  # the daemon has read them and is preprocessing
        b.hello()
        a.pump(500)     # a main thread busy with the maps would have sent them before hello
        assert a.take_reply(rids[-1]) is None
        deadline = time.monotonic() + 120
        replies = []
        for rid in rids:
            while (reply := a.take_reply(rid)) is None and time.monotonic() < deadline:
                a.pump(100)
            replies.append(reply and reply[0]["event"])
        assert replies == ["preprocess"] * 3, replies
    done: list[str] = []

    def big(c: Client) -> None:
        try:
            c.preprocess(frame, "canny", timeout=120)
            done.append("map")
        except DaemonError as exc:
            done.append(exc.code)

    clients = [Client(daemon.endpoint) for _ in range(7)]
    try:
        for c in clients:
            c.hello()
        threads = [threading.Thread(target=big, args=(c,)) for c in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for c in clients:
            c.close()
    assert len(done) == 7 and set(done) == {"map", ErrorCode.BUSY}, done
    assert done.count("map") >= 4, done     # one running and three waiting at least
    with Client(daemon.endpoint) as c:
        assert c.hello()["controlnets"]


def test_preprocess_waiting_at_shutdown_is_told_why(tmp_path: Path) -> None:
    """SIGTERM with maps still to make: every request gets one answer (the map being made,
    "the daemon is shutting down" for those waiting) and the daemon exits cleanly."""
    frame = _big_control()
    spec = frame.spec("control").to_json()
    d = start_daemon(tmp_path)
    try:
        with Client(d.endpoint) as c:
            c.hello()
            rids = [c.send_request("preprocess", [frame.data], preprocess="canny",
                                   frames=[spec]) for _ in range(3)]
            time.sleep(0.5)
            d.proc.terminate()
            deadline = time.monotonic() + 60
            answers = []
            for rid in rids:
                while (reply := c.take_reply(rid)) is None and time.monotonic() < deadline:
                    c.pump(100)
                answers.append(reply and (reply[0]["event"], reply[0].get("message")))
        assert d.proc.wait(60) == 0
    finally:
        d.stop()
    assert answers[0] == ("preprocess", None), answers
    assert answers[2] == ("error", "the daemon is shutting down"), answers


def test_hello_offers_controls(client: Client) -> None:
    hello = client.request("hello")[0]
    assert "controls" in hello["features"]
    assert {"name": "shapes-scribble", "type": "scribble", "arch": None} in hello["controlnets"]
    assert "scribble" in hello["control_types"] and "canny" in hello["preprocessors"]


def test_the_original_layout_round_trips(tmp_path: Path) -> None:
    """Our converter is the exact inverse of diffusers' loader: every tensor comes back."""
    import torch
    from diffusers import ControlNetModel

    from paintbridge.backend.models import controlnets
    from tools.tiny_models import save_tiny_controlnet

    path = save_tiny_controlnet("v1", tmp_path / "x_canny.safetensors")
    folder = save_tiny_controlnet("v1", tmp_path / "folder", layout="folder")
    entry = controlnets.inspect(controlnets.ControlNetEntry("x_canny", path))
    loaded = controlnets.load(entry, "cpu", torch.float32).state_dict()
    want = ControlNetModel.from_pretrained(str(folder)).state_dict()
    assert loaded.keys() == want.keys()
    assert all(torch.equal(loaded[k], want[k]) for k in want)


# --------------------------------------------------------------------------- the hosts' path


class LayeredDocument:
    """plugin.session.Document over numpy layers: 'paper' (edited) and 'lines' (the control
    layer the artist drew on); records the layers added."""

    def __init__(self, lines: np.ndarray) -> None:
        paper = np.zeros((SIDE, SIDE, 4), np.uint8)
        paper[...] = (*data.COLOURS["white"], 255)
        self.layers = {"paper": paper, "lines": lines}
        self.active = "paper"
        self.added: list[tuple[str, object]] = []

    def canvas(self):
        from paintbridge.plugin.region import Rect

        return Rect(0, 0, SIDE, SIDE)

    def selection_bounds(self):
        return None

    def pixel_format(self) -> str:
        return "rgba8"

    def read_pixels(self, rect) -> bytes:
        return self.read_layer(self.active, rect).data

    def read_selection(self, rect):
        raise AssertionError("nothing is selected")

    def layer_key(self) -> str:
        return self.active

    def read_layer(self, key: str, rect) -> Frame:
        px = self.layers[key][rect.y:rect.bottom, rect.x:rect.right]
        return Frame(rect.width, rect.height, "rgba8", np.ascontiguousarray(px).tobytes())

    def add_results(self, patches, names, group) -> None:
        self.added.extend(zip(names, patches, strict=True))


def test_a_host_document_sends_its_control_layer(daemon: DaemonProc) -> None:
    """What both host plugins do (plugin.session): the control layer's drawing steers a
    text-to-image job over the whole layer, the layer edited is never the control layer,
    and "Preprocess to layer" adds the map as a new layer."""
    import time

    from paintbridge.plugin.session import ControlLayer, GenerationSettings, Session, prepare

    box = (12, 10, 48, 46)
    lines = np.frombuffer(outline_layer("triangle", box).data, np.uint8).reshape(SIDE, SIDE, 4)
    doc = LayeredDocument(lines.copy())
    control = ControlLayer("lines", "scribble", name="lines")
    settings = GenerationSettings(prompt="a red shape", seed=21, mode="txt2img")
    session = Session(daemon.endpoint)
    assert session.check()
    session.submit(doc, settings, control_layers=[control])
    deadline = time.monotonic() + 240
    while not session.job.finished:
        session.poll(100)
        assert time.monotonic() < deadline
    assert session.deliver(doc) == ["a red shape [seed 21]"]
    patch = doc.added[0][1]
    out = np.frombuffer(patch.data, np.uint8).reshape(SIDE, SIDE, 4)[..., :3]
    iou, shape = shape_iou(out, "red", "triangle", box)
    assert iou >= 0.5 and shape == "triangle", (iou, shape)
    assert np.array_equal(doc.layers["lines"], lines)   # the control layer as drawn

    doc.active = "lines"
    with pytest.raises(ValueError, match="'lines' is a control layer"):
        prepare(doc, settings, control_layers=[control])
    doc.active = "paper"
    assert session.preprocess(doc, control) == "Control map: lines (scribble)"
    name, mapped = doc.added[-1]
    px = np.frombuffer(mapped.data, np.uint8).reshape(SIDE, SIDE, 4)
    drawn = lines[..., 3] > 0
    assert np.array_equal(px[..., 0] > 127, drawn) and px[..., 3].min() == 255
    session.close()


def test_live_follows_the_control_layer_too(daemon: DaemonProc) -> None:
    """Live with a control layer: drawing on the control layer alone (the painted layer
    unchanged) sends a new live job, which carries the control and paints it."""
    from paintbridge.plugin.session import ControlLayer, GenerationSettings
    from tests.test_controller import make, spin
    from tests.test_live_client import LiveDoc

    class LiveLayers(LiveDoc):
        lines = np.zeros((SIDE, SIDE, 4), np.uint8)

        def layer_key(self) -> str:
            return "paper"

        def read_layer(self, key: str, rect) -> Frame:
            px = self.lines[rect.y:rect.bottom, rect.x:rect.right]
            return Frame(rect.width, rect.height, "rgba8", np.ascontiguousarray(px).tobytes())

    c, _ = make(daemon.endpoint)
    spin(c, lambda: c.session.connected)
    doc = LiveLayers(SIDE, SIDE)
    doc.pixels[..., :3] = data.COLOURS["white"]
    settings = GenerationSettings(prompt="a red shape on a white background", seed=4,
                                  strength=0.9)
    controls = [ControlLayer("lines", "scribble", name="lines")]
    assert c.live_start(settings, lambda: doc), c.message

    def shown_after(n: int) -> bool:
        c.live_tick(settings, control_layers=controls)
        return doc.preview_updates > n

    spin(c, lambda: shown_after(0), 120)                 # the page as it is, no drawing yet
    sent, page = c.live.sent, doc.pixels.copy()
    box = (14, 12, 50, 48)
    doc.lines = np.frombuffer(outline_layer("triangle", box).data,
                              np.uint8).reshape(SIDE, SIDE, 4).copy()
    shown = doc.preview_updates
    spin(c, lambda: shown_after(shown), 120)            # the drawing alone sends a job
    assert c.live.sent > sent and np.array_equal(doc.pixels, page)
    preview = doc.preview
    assert (preview.x, preview.y, preview.width, preview.height, preview.format) == \
        (0, 0, SIDE, SIDE, "bgra8")
    out = np.frombuffer(preview.data, np.uint8).reshape(SIDE, SIDE, 4)[..., [2, 1, 0]]
    iou, shape = shape_iou(out, "red", "triangle", box)
    assert iou >= 0.4, (iou, shape)
    c.live_stop()
    c.close()
