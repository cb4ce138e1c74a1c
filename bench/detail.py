"""Detail and seams on a real canvas: how a repainted area's edge blends, side by side.

Why: a result cut to the selection and laid over the untouched layer shows its edge when it
sits a shade off from its surroundings. The seam ratio (backend/seams.py) is the step across
the selection's edge against the picture's own step over the same distance just outside it:
1 means the edge is as smooth as the picture. Measured through a real daemon with the
embedded model, colour matching off (what paintbridge did before) and on (the default), on
a soft gradient and a photo-like picture, image to image at low strength and inpainting with
a prompt that keeps the background. Target: matching at least halves the ratio, or brings
it to 1.2 or below where the picture's own texture already hides the edge (a noisy photo:
its own step over the same distance is as large as the seam).

Still to come here (issue 12): detail kept by tiled refinement against scale-and-back,
peak memory per region size, time per megapixel.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import numpy as np  # noqa: E402
from common import Row  # noqa: E402

from paintbridge.backend import seams  # noqa: E402
from paintbridge.plugin.client import Client, Frame, JobState  # noqa: E402

SIDE = 192
SEL = (64, 128)   # the selection: a square from SEL[0] to SEL[1] on both axes


def pictures() -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    grad = np.stack([(90 + 40 * xx / SIDE) / 255, (120 + 20 * yy / SIDE) / 255,
                     np.full_like(xx, 170 / 255)], -1)
    photo = common.photo_like(SIDE, SIDE, seed=3)[..., :3].astype(np.float32) / 255
    return {"gradient": grad, "photo-like": photo}


def selection() -> np.ndarray:
    m = np.zeros((SIDE, SIDE), np.float32)
    m[SEL[0]:SEL[1], SEL[0]:SEL[1]] = 1
    return m


def seam(client: Client, src: np.ndarray, kind: str, params: dict) -> float:
    src8 = np.rint(src * 255).astype(np.uint8)
    img = np.concatenate([src8, np.full((SIDE, SIDE, 1), 255, np.uint8)], -1)
    sel = selection()
    job = client.submit(kind, {"grow": 4, "feather": 4, **params},
                        image=Frame(SIDE, SIDE, "rgba8", img.tobytes()),
                        mask=Frame(SIDE, SIDE, "gray8", (sel * 255).astype(np.uint8).tobytes()))
    client.wait(job, timeout=300)
    assert job.state is JobState.DONE, job.error_message
    p = job.patches[0]
    px = np.frombuffer(p.data, np.uint8).reshape(p.height, p.width, 4) / 255.0
    full = np.zeros((SIDE, SIDE, 4))
    full[p.y:p.y + p.height, p.x:p.x + p.width] = px
    return seams.seam_ratio(seams.composite(src8 / 255.0, full[..., :3], full[..., 3]), sel)


CASES = (("img2img 0.3", "img2img", {"prompt": "", "strength": 0.3}),
         ("img2img 0.6", "img2img", {"prompt": "", "strength": 0.6}),
         ("inpaint, background prompt", "inpaint", {"prompt": "a blue background"}))


def run(quick: bool) -> tuple[dict, list[Row]]:
    seeds = (1, 2) if quick else (1, 2, 3, 4, 5, 6)
    data: dict = {"quick": quick, "side": SIDE, "selection": SEL, "seeds": seeds,
                  "seams": {}}
    rows = []
    with common.daemon() as d, Client(d.endpoint) as client:
        for pname, src in pictures().items():
            data["seams"][pname] = {"source": seams.seam_ratio(src, selection())}
            for label, kind, params in CASES:
                r = {cm: [seam(client, src, kind, {**params, "seed": s, "colour_match": cm})
                          for s in seeds] for cm in ("off", "on")}
                data["seams"][pname][label] = r
                off, on = float(np.mean(r["off"])), float(np.mean(r["on"]))
                rows.append(Row(f"{pname}, {label}: seam off -> on",
                                f"{off:.1f} -> {on:.1f} ({on / off:.2f}x)",
                                "<= 0.5x or <= 1.2", on <= 0.5 * off or on <= 1.2))
    return data, rows


def main(argv: list[str] | None = None) -> int:
    args = common.parse_args(__doc__.splitlines()[0], argv)
    data, rows = run(args.quick)
    common.print_table("Seams: step across the selection's edge / the picture's own step "
                       "(1 = invisible)", rows)
    print(f"wrote {common.write_json(args.out, 'detail', data, rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
