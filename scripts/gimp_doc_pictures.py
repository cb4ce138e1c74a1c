"""Write the pictures of docs/gimp.md from the real GIMP 3: run by hand when the plug-in's
looks change (not part of the tests).

On the host (as root): build or reuse the trixie chroot of scripts/ensure_gimp_chroot.sh,
install the plug-in into a fresh GIMP profile there, start a daemon with the embedded model,
and run this same file inside GIMP under a private Xvfb. Inside GIMP (``PB_ROLE=gimp``):
inpaint a circle of samples/sample.png through ``paintbridge-inpaint`` and photograph the
settings dialog. Back on the host: ``gimp-result.png`` (before | after) and
``gimp-dialog.png``.

Usage: sudo .venv/bin/python scripts/gimp_doc_pictures.py [--out docs]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "samples" / "sample.png"
CIRCLE = (140, 70, 91, 91)          # x, y, w, h of the circle in samples/sample.png's mask
PROMPT, SEED, STEPS = "a red circle", 1, 20
GIMP_TIMEOUT_S = 600


# ------------------------------------------------------------------ inside GIMP


def in_gimp() -> None:
    """The picture and the dialog, written to $PB_OUT with what happened in status.json."""
    import traceback

    import gi

    gi.require_version("Gtk", "3.0")
    gi.require_version("Gdk", "3.0")
    from gi.repository import Gdk, Gimp, Gio, GLib, Gtk

    out, endpoint = os.environ["PB_OUT"], os.environ["PB_ENDPOINT"]
    sys.path.insert(0, os.path.join(os.environ["PB_PLUG_IN_DIR"], "paintbridge"))
    proc = Gimp.get_pdb().lookup_procedure("paintbridge-inpaint")
    status = {}

    def save(img, name):
        Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, img,
                       Gio.File.new_for_path(os.path.join(out, name)), None)

    try:
        img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE,
                             Gio.File.new_for_path(os.path.join(out, "sample.png")))
        layer = img.get_layers()[0]
        img.select_ellipse(Gimp.ChannelOps.REPLACE, *CIRCLE)
        save(img, "before.png")
        config = proc.create_config()
        for key, value in {"run-mode": Gimp.RunMode.NONINTERACTIVE, "image": img,
                           "prompt": PROMPT, "seed": SEED, "steps": STEPS,
                           "endpoint": endpoint}.items():
            config.set_property(key, value)
        config.set_core_object_array("drawables", [layer])
        result = proc.run(config)
        status["result"] = result.index(0).value_nick
        save(img, "after.png")
        img.delete()
    except Exception:
        status["result"] = traceback.format_exc()

    try:
        import gimp_dialogs

        from plugin.session import Session

        session = Session(endpoint)
        session.check(timeout=30.0)
        config = proc.create_config()
        for key, value in {"prompt": PROMPT, "seed": SEED, "endpoint": endpoint}.items():
            config.set_property(key, value)

        def shoot():
            for window in Gtk.Window.list_toplevels():
                if isinstance(window, Gtk.Dialog) and window.get_visible():
                    gdk = window.get_window()
                    Gdk.pixbuf_get_from_window(gdk, 0, 0, gdk.get_width(), gdk.get_height()
                                               ).savev(os.path.join(out, "dialog.png"), "png",
                                                       [], [])
                    window.response(Gtk.ResponseType.CANCEL)
                    return False
            return True

        GLib.timeout_add(1500, shoot)
        gimp_dialogs.settings_dialog(proc, config, session)
        session.close()
        status["dialog"] = "shown"
    except Exception:
        status["dialog"] = traceback.format_exc()
    with open(os.path.join(out, "status.json"), "w") as f:
        json.dump(status, f)


# ------------------------------------------------------------------ on the host


def gimp_run(chroot: Path, inside: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    """This file in GIMP's Python batch interpreter, in the chroot, with a clean environment."""
    base = {"HOME": f"{inside}/home", "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8",
            "PB_ROLE": "gimp", "PB_OUT": inside,
            "PB_PLUG_IN_DIR": f"{inside}/home/.config/GIMP/3.0/plug-ins"}
    cmd = ["chroot", str(chroot), "env", "-i", *(f"{k}={v}" for k, v in {**base, **env}.items()),
           "gimp-console-3.0", "-i", "--batch-interpreter", "python-fu-eval", "-b",
           f"p = '{inside}/pictures.py'; exec(compile(open(p).read(), p, 'exec'), "
           "{'__file__': p, '__name__': 'pictures'})", "--quit"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=GIMP_TIMEOUT_S)


def compose(work: Path, out: Path) -> None:
    from PIL import Image

    before, after = (Image.open(work / f"{n}.png").convert("RGB") for n in ("before", "after"))
    both = Image.new("RGB", (before.width * 2 + 8, before.height), "white")
    both.paste(before, (0, 0))
    both.paste(after, (before.width + 8, 0))
    both.save(out / "gimp-result.png", optimize=True)
    Image.open(work / "dialog.png").save(out / "gimp-dialog.png", optimize=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(ROOT / "docs"), help="folder for the pictures")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tools import childdaemon

    ensured = subprocess.run(["sh", str(ROOT / "scripts" / "ensure_gimp_chroot.sh")],
                             capture_output=True, text=True)
    chroot = Path(ensured.stdout.strip().splitlines()[-1]) if ensured.stdout.strip() else None
    if ensured.returncode != 0 or chroot is None or not (chroot / "usr/bin/gimp-console-3.0"
                                                          ).exists():
        print(f"no GIMP 3 chroot (needs root):\n{ensured.stdout}{ensured.stderr}",
              file=sys.stderr)
        return 1
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        print("Xvfb is needed for the dialog: apt-get install xvfb", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="paintbridge-pictures-", dir=chroot / "tmp"))
    inside = "/" + str(work.relative_to(chroot))
    daemon = server = None
    try:
        installed = subprocess.run(
            [sys.executable, "-m", "paintbridge.backend", "install", "gimp", "--plug-ins",
             str(work / "home" / ".config" / "GIMP" / "3.0" / "plug-ins")],
            capture_output=True, text=True)
        if installed.returncode != 0:
            print(installed.stderr, file=sys.stderr)
            return 1
        shutil.copy(__file__, work / "pictures.py")
        shutil.copy(SAMPLE, work / "sample.png")
        daemon, endpoint = childdaemon.spawn([], work / "daemon.log", cwd=ROOT)
        childdaemon.wait_ready(daemon, endpoint, work / "daemon.log", timeout=180)
        display = next(n for n in range(90, 200) if not Path(f"/tmp/.X{n}-lock").exists())
        server = subprocess.Popen([xvfb, f":{display}", "-screen", "0", "1280x1024x24",
                                   "-nolisten", "tcp"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        time.sleep(1.0)
        run = gimp_run(chroot, inside, {"PB_ENDPOINT": endpoint, "DISPLAY": f":{display}"})
        status_file = work / "status.json"
        status = json.loads(status_file.read_text()) if status_file.exists() else {}
        if status.get("result") != "success" or status.get("dialog") != "shown":
            print(f"GIMP did not make the pictures: {status}\n{run.stderr[-3000:]}",
                  file=sys.stderr)
            return 1
        out = Path(args.out)
        compose(work, out)
        print(f"wrote {out / 'gimp-result.png'} and {out / 'gimp-dialog.png'}")
        return 0
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        if daemon is not None:
            daemon.terminate()
            daemon.wait(30)
        shutil.rmtree(work, ignore_errors=True)


if os.environ.get("PB_ROLE") == "gimp":
    in_gimp()
elif __name__ == "__main__":
    sys.exit(main())
