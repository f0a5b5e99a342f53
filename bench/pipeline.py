"""Per-photo latency of the whole pipeline in-process, side by side with face_recognition.

Run from the repository root (needs the LFW photos in ../shared/data/faces and the
face_recognition package: `make bench-deps`):

    .venv/bin/python -m bench.pipeline                 # readable table
    .venv/bin/python -m bench.pipeline --json          # one JSON object on stdout
    .venv/bin/python -m bench.pipeline --photos 50     # a quicker run

Both sides get the same 250x250 LFW JPEG bytes, one photo at a time, and do the same work:
decode, detect every face, compute landmarks and embed every face.
- facegate: models.imaging.decode_image, then FacePipeline.analyze (MTCNN, alignment,
  quality, dlib ResNet in PyTorch).
- face_recognition: load_image_file, face_locations (HOG, its default), face_encodings.
The first --warmup photos are not timed. Latency is wall time per photo in ms.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import random
import statistics
import sys
import time
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch

from bench.common import emit
from bench.service import LFW_DIR, import_face_recognition
from models.imaging import decode_image
from models.pipeline import FacePipeline, PipelineConfig


def sample_photos(count: int, seed: int) -> list[tuple[str, bytes]]:
    if not LFW_DIR.is_dir():
        sys.exit(f"LFW photos not found at {LFW_DIR.resolve()}")
    paths = sorted(LFW_DIR.glob("*/*.jpg"))
    chosen = random.Random(seed).sample(paths, count)
    return [(str(path.relative_to(LFW_DIR)), path.read_bytes()) for path in chosen]


def time_calls(call, photos: list[tuple[str, bytes]], warmup: int) -> dict[str, Any]:
    for _, data in photos[:warmup]:
        call(data)
    latencies_ms = []
    faces = 0
    for _, data in photos[warmup:]:
        started = time.perf_counter()
        faces += call(data)
        latencies_ms.append((time.perf_counter() - started) * 1000)
    return {
        "photos": len(latencies_ms),
        "faces": faces,
        "p50_ms": round(statistics.median(latencies_ms), 1),
        "p95_ms": round(float(np.percentile(latencies_ms, 95)), 1),
        "mean_ms": round(statistics.fmean(latencies_ms), 1),
        "photos_per_s": round(1000 * len(latencies_ms) / sum(latencies_ms), 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=200, help="timed photos per side (default: 200)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed photos first (default: 5)")
    parser.add_argument("--seed", type=int, default=0, help="photo sample seed (default: 0)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--skip-face-recognition", action="store_true", help="time facegate only")
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    photos = sample_photos(args.photos + args.warmup, args.seed)

    pipeline = FacePipeline(PipelineConfig(device="cpu"))

    def facegate_call(data: bytes) -> int:
        return len(pipeline.analyze(decode_image(data)).faces)

    results = {"facegate": time_calls(facegate_call, photos, args.warmup)}

    if not args.skip_face_recognition:
        face_recognition = import_face_recognition()

        def face_recognition_call(data: bytes) -> int:
            image = face_recognition.load_image_file(io.BytesIO(data))
            return len(face_recognition.face_encodings(image, face_recognition.face_locations(image)))

        results["face_recognition"] = time_calls(face_recognition_call, photos, args.warmup)

    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "embedder": pipeline.embedder_id,
        "results": results,
    }
    lines = [f"{'side':<18}{'photos':>8}{'faces':>7}{'p50 ms':>9}{'p95 ms':>9}{'photos/s':>10}"]
    for side, row in results.items():
        lines.append(
            f"{side:<18}{row['photos']:>8}{row['faces']:>7}{row['p50_ms']:>9}{row['p95_ms']:>9}{row['photos_per_s']:>10}"
        )
    emit(report, "\n".join(lines), as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
