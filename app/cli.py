"""The `facegate` command: serve the API, embed or detect faces in files, download weights.

    facegate serve [--host H] [--port P]
    facegate detect IMAGE...
    facegate embed IMAGE... [--embedder dlib-resnet]
    facegate models download facenet-vggface2 [--url URL] [--sha256 HEX] [--dest FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from models.errors import FacegateError


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args)
    except FacegateError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="facegate", description="Self-hosted face recognition service.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP API (settings from FACEGATE_* variables)")
    serve.add_argument("--host", help="bind address (default: FACEGATE_HOST, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default: FACEGATE_PORT, 8000)")
    serve.set_defaults(handler=run_serve)

    for name, embed in (("detect", False), ("embed", True)):
        command = commands.add_parser(
            name, help=f"print JSON with every face{' and its embedding' if embed else ''} in each image"
        )
        command.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
        command.add_argument("--embedder", default="dlib-resnet", help="embedder id (default: dlib-resnet)")
        command.add_argument("--weights", type=Path, help="embedder weights file (default: the embedder's own)")
        command.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
        command.set_defaults(handler=run_analyze, embed=embed)

    models_command = commands.add_parser("models", help="manage model weights")
    models_commands = models_command.add_subparsers(dest="models_command", required=True)
    download = models_commands.add_parser("download", help="fetch weights and check their SHA-256")
    download.add_argument("model", choices=["facenet-vggface2"])
    download.add_argument("--url", help="source URL: https://, http:// or file:// (a mirror for air-gapped sites)")
    download.add_argument("--sha256", help="expected SHA-256 (default: the pinned checksum of the release)")
    download.add_argument("--dest", type=Path, help="target file (default: $FACEGATE_MODELS_DIR/<file name>)")
    download.set_defaults(handler=run_download)
    return parser


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn
    from pydantic import ValidationError

    from app.main import create_app
    from app.settings import Settings
    from models.pipeline import resolve_device

    overrides = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
    try:
        settings = Settings(**overrides)
    except ValidationError as error:
        for item in error.errors(include_url=False):
            name = "FACEGATE_" + "_".join(str(part) for part in item["loc"]).upper()
            print(f"error: invalid {name}={item.get('input')!r}: {item['msg']}", file=sys.stderr)
        return 2
    try:
        resolve_device(settings.device)  # fail now, not with a server that can never be ready
    except ValueError as error:
        print(f"error: invalid FACEGATE_DEVICE: {error}", file=sys.stderr)
        return 2
    logging.getLogger().setLevel(settings.log_level)
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        timeout_graceful_shutdown=30,
    )
    return 0


def run_analyze(args: argparse.Namespace) -> int:
    from models.imaging import load_image
    from models.pipeline import FacePipeline, PipelineConfig

    pipeline = FacePipeline(PipelineConfig(embedder=args.embedder, embedder_weights=args.weights, device=args.device))
    results: list[dict[str, Any]] = []
    failures = 0
    for path in args.images:
        try:
            analysis = pipeline.analyze(load_image(path), embed=args.embed)
        except (FacegateError, OSError) as error:
            failures += 1
            code = getattr(error, "code", "io-error")
            results.append({"file": str(path), "error": {"code": code, "message": str(error)}})
            continue
        faces = []
        for face in analysis.faces:
            item: dict[str, Any] = {
                "box": [round(v, 1) for v in face.bbox],
                "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in face.landmarks],
                "detection_score": round(face.score, 4),
                "quality": face.quality.to_dict(),
            }
            if args.embed:
                item["embedding"] = [round(float(v), 6) for v in face.embedding]
            faces.append(item)
        results.append({"file": str(path), "width": analysis.width, "height": analysis.height, "faces": faces})

    output: dict[str, Any] = {"detector": "mtcnn", "images": results}
    if args.embed:
        output["embedder"] = pipeline.embedder_id
    json.dump(output, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 1 if failures else 0


def run_download(args: argparse.Namespace) -> int:
    from models import facenet

    try:
        destination = facenet.download_weights(
            url=args.url or facenet.WEIGHTS_URL,
            destination=args.dest,
            sha256=(args.sha256 or facenet.WEIGHTS_SHA256).lower(),
            progress=facenet.print_progress,
        )
    finally:
        sys.stderr.write("\n")  # end the progress line before any message
    print(f"{args.model} weights verified and saved to {destination}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
