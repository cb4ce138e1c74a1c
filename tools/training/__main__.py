"""CLI: ``python -m tools.training train|eval|lora|upscaler|control`` (reproduce / score the
default model, train its test LoRA, upscaler and ControlNet)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def main(argv: list[str] | None = None) -> int:
    from .train import DEFAULT_CURVE, DEFAULT_OUT, TrainConfig

    ap = argparse.ArgumentParser(prog="python -m tools.training")
    sub = ap.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="train the default model from scratch (seeded)")
    tr.add_argument("--out", type=Path, default=DEFAULT_OUT)
    tr.add_argument("--curve", type=Path, default=DEFAULT_CURVE)
    tr.add_argument("--vae-steps", type=int, default=TrainConfig.vae_steps)
    tr.add_argument("--unet-steps", type=int, default=TrainConfig.unet_steps)
    tr.add_argument("--seed", type=int, default=TrainConfig.seed)
    lo = sub.add_parser("lora", help="train the sample 'gray' LoRA for the embedded model "
                                      "(seeded) and score it")
    lo.add_argument("--out", type=Path, default=None, help="default samples/loras")
    lo.add_argument("--steps", type=int, default=None)
    lo.add_argument("--n", type=int, default=30, help="inpaint cases per prompt when scoring")
    lo.add_argument("--eval-only", action="store_true", help="score the files in --out")
    up = sub.add_parser("upscaler", help="train the sample upscaler (Compact x2, seeded) "
                                          "and score it against Lanczos")
    up.add_argument("--out", type=Path, default=None, help="default samples/upscalers")
    up.add_argument("--steps", type=int, default=800)
    co = sub.add_parser("control", help="train the embedded model's scribble ControlNet "
                                         "(seeded) and score it")
    co.add_argument("--out", type=Path, default=None,
                    help="default backend/default_controlnets/shapes-scribble")
    co.add_argument("--steps", type=int, default=None)
    co.add_argument("--n", type=int, default=30, help="text-to-image cases when scoring")
    co.add_argument("--eval-only", action="store_true", help="score the ControlNet in --out")
    ev = sub.add_parser("eval", help="score a model folder against the procedural ground truth")
    ev.add_argument("--model", type=Path, default=DEFAULT_OUT)
    ev.add_argument("--n", type=int, default=50, help="masked regions per prompt")
    ev.add_argument("--doc", type=Path, default=None, help="write results markdown here")
    ev.add_argument("--grid", type=Path, default=None, help="write the picture grid here")
    ev.add_argument("--json", type=Path, default=None, help="write raw numbers here")
    ev.add_argument("--steps", type=int, default=None)
    ev.add_argument("--guidance", type=float, default=None)
    ev.add_argument("--dtype", default=None, choices=["float32", "bfloat16"])
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    if args.cmd == "lora":
        import json

        from . import lora

        out = args.out or lora.DEFAULT_OUT
        report = {}
        if not args.eval_only:
            cfg = lora.LoraConfig(**({"steps": args.steps} if args.steps else {}))
            report["training"] = lora.train(out, cfg)
        report["evaluation"] = lora.evaluate(out, n=args.n)
        (out / f"{lora.WORD}.json").write_text(json.dumps(report, indent=1) + "\n")
        print(json.dumps(report["evaluation"]["mean"], indent=1))
        return 0
    if args.cmd == "control":
        import json

        from . import control

        out = args.out or control.DEFAULT_OUT
        report = {}
        if not args.eval_only:
            cfg = control.ControlConfig(**({"steps": args.steps} if args.steps else {}))
            report["training"] = control.train(out, cfg)
        report["evaluation"] = control.evaluate(out, n=args.n)
        control.REPORT.write_text(json.dumps(report, indent=1) + "\n")
        print(json.dumps({k: report["evaluation"][k] for k in ("with", "without")}, indent=1))
        return 0
    if args.cmd == "upscaler":
        import json

        from . import upscaler

        result = upscaler.main(args.out or upscaler.OUT, args.steps)
        print(json.dumps({k: result[k] for k in ("seconds", "eval")}, indent=1))
        return 0
    if args.cmd == "train":
        from .train import train

        cfg = TrainConfig(vae_steps=args.vae_steps, unet_steps=args.unet_steps, seed=args.seed)
        train(args.out, args.curve, cfg)
        return 0
    from .evaluate import run_eval

    run_eval(args.model, n=args.n, doc=args.doc, grid=args.grid, json_out=args.json,
             steps=args.steps, guidance=args.guidance, dtype=args.dtype)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
