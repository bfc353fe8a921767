"""Command line: ``tcube demo``, ``tcube train``, ``tcube info``."""

from __future__ import annotations

import argparse
import json
import sys

from tcube.errors import TcubeError


def _cmd_train(args: argparse.Namespace) -> int:
    from tcube.train import TrainConfig, train

    cfg = TrainConfig(arch=args.arch, name=args.name or f"tec-{args.arch}", data=args.data, holdout=args.holdout,
                      out=args.out, steps=args.steps, epoch_steps=args.epoch_steps, batch=args.batch,
                      crop=args.crop, lr=args.lr, max_minutes=args.max_minutes, threads=args.threads,
                      seed=args.seed, device=args.device, export=args.export,
                      model={k: v for k, v in (("widths", args.widths), ("m", args.latents), ("nh", args.hyper),
                                               ("kernels", args.kernels)) if v is not None})
    train(cfg)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from tcube.demo import run_demo

    run_demo(models=args.models, qualities=args.qualities, as_json=args.json)
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    import tcube

    if args.blob:
        with open(args.blob, "rb") as f:
            print(json.dumps(tcube.info(f.read()), indent=2))
    else:
        print(json.dumps({m: tcube.models.registry.model_card_summary(m) for m in tcube.list_models()}, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tcube", description="Learned compression of Sentinel-2 datacubes.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="compress the shipped sample cube with every model; print size, ratio, PSNR, time")
    d.add_argument("--models", nargs="+", default=None, help="models to run (default: all)")
    d.add_argument("--qualities", nargs="+", type=int, default=[1, 4, 8, 12, 16], help="qualities 1..16")
    d.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    d.set_defaults(func=_cmd_demo)

    t = sub.add_parser("train", help="train a codec on Sentinel-2 files/folders and export safetensors weights")
    t.add_argument("--arch", choices=["fp", "hp"], required=True,
                   help="fp: factorized prior; hp: mean-scale hyperprior")
    t.add_argument("--name", help="model name written in the weights (default tec-ARCH)")
    t.add_argument("--widths", type=int, nargs="+", help="hidden channels of the analysis stages (default 64 64 64)")
    t.add_argument("--kernels", type=int, nargs="+", help="kernel size of each stride-2 stage (default 5 5 5 5)")
    t.add_argument("--latents", type=int, help="latent channels (default 128)")
    t.add_argument("--hyper", type=int, help="hyper-latent channels, hp only (default 64)")
    t.add_argument("--data", nargs="+", required=True, help="GeoTIFF / NetCDF / zarr / npy files or folders")
    t.add_argument("--holdout", default="0080717", help="files whose path contains this are used for validation only")
    t.add_argument("--out", default="runs/model", help="run folder (checkpoint, resumable)")
    t.add_argument("--steps", type=int, default=4000)
    t.add_argument("--epoch-steps", type=int, default=250, help="validate and checkpoint every N steps")
    t.add_argument("--batch", type=int, default=8)
    t.add_argument("--crop", type=int, default=96, help="crop size (multiple of 16)")
    t.add_argument("--lr", type=float, default=5e-4)
    t.add_argument("--max-minutes", type=float, default=None, help="stop (and export) after this wall time")
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu", help="cpu or cuda")
    t.add_argument("--export", help="write safetensors weights (and a .md model card beside them) here")
    t.set_defaults(func=_cmd_train)

    i = sub.add_parser("info", help="describe a blob (or, without one, the installed models)")
    i.add_argument("blob", nargs="?", help="a file written by tcube.encode")
    i.set_defaults(func=_cmd_info)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``tcube`` command."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TcubeError as exc:
        print(f"tcube: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
