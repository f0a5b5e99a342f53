"""Time the PyTorch rebuild of dlib's face recognition ResNet against dlib itself.

Run from the repository root (needs the dev extra, which provides dlib, and the LFW photos in
../shared/data/faces):

    python -m bench.embedder            # readable table
    python -m bench.embedder --json     # one JSON object on stdout

Both sides embed the same 16 real LFW chips, cut by dlib's pipeline (frontal face detector,
5-point shape predictor, get_face_chip at 150 px with 25% padding). Our side is timed as
`model(preprocess(chips))` under torch.inference_mode, so both sides start from uint8 chips.
dlib's side is `compute_face_descriptor(chip)` per face and `compute_face_descriptor(list)`
for the batch. Warm-up runs are excluded. The table gives the median and p95 over the timed
runs, in ms. Torch uses its default thread count unless --threads is given. The output also
reports parity on those chips (minimum cosine, maximum absolute difference).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from models.dlib_resnet import default_weights_path, load_dlib_resnet, preprocess

REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]
LFW_DIR = REPO_ROOT / ".." / "shared" / "data" / "faces" / "lfw" / "lfw-deepfunneled"
IDENTITIES = ("George_W_Bush", "Colin_Powell", "Serena_Williams", "Junichiro_Koizumi", "Jennifer_Lopez")
BATCH_SIZE = 16


def load_lfw_chips(count: int = BATCH_SIZE) -> np.ndarray:
    """Cut `count` 150x150 RGB chips from LFW photos with dlib's own alignment.

    Returns (count, 150, 150, 3) uint8. Exits with a message when dlib or the photos are
    missing.
    """
    try:
        import dlib
    except ImportError:
        sys.exit(
            "dlib is not installed: install the dev extra (pip install -e '.[dev]'), which provides dlib-bin."
        )
    if not LFW_DIR.is_dir():
        sys.exit(f"LFW photos not found at {LFW_DIR.resolve()}; this benchmark needs ../shared/data/faces.")

    models_dir = default_weights_path().parent
    detector = dlib.get_frontal_face_detector()
    shape_predictor = dlib.shape_predictor(str(models_dir / "shape_predictor_5_face_landmarks.dat"))

    chips: list[np.ndarray] = []
    photos = [photo for identity in IDENTITIES for photo in sorted((LFW_DIR / identity).glob("*.jpg"))[:4]]
    for photo in photos:
        image = dlib.load_rgb_image(str(photo))
        rects = detector(image, 1)  # upsample the photo once (2x), so smaller faces are found too
        if not rects:
            continue
        shape = shape_predictor(image, rects[0])
        chips.append(np.asarray(dlib.get_face_chip(image, shape, size=150, padding=0.25)))
        if len(chips) == count:
            return np.stack(chips)
    sys.exit(f"dlib found faces in only {len(chips)} of {len(photos)} LFW photos; {count} needed.")


def time_ms(run: Callable[[], object], *, runs: int, warmup: int) -> dict[str, float]:
    """Call `run` warmup + runs times; return the median and p95 of the timed runs, in ms."""
    for _ in range(warmup):
        run()
    times_ms = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times_ms.append((time.perf_counter() - start) * 1e3)
    return {"median_ms": float(np.median(times_ms)), "p95_ms": float(np.percentile(times_ms, 95))}


def run_benchmark(*, runs: int, warmup: int, dlib_runs: int) -> dict[str, Any]:
    import dlib

    chips = load_lfw_chips()
    model = load_dlib_resnet()
    recognizer = dlib.face_recognition_model_v1(str(default_weights_path()))
    single, batch = chips[:1], chips
    chip_list = list(chips)

    def torch_forward(crops: np.ndarray) -> torch.Tensor:
        with torch.inference_mode():
            return model(preprocess(crops))

    results = [
        {
            "name": "torch DlibResNet",
            "batch": 1,
            **time_ms(lambda: torch_forward(single), runs=runs, warmup=warmup),
        },
        {
            "name": "torch DlibResNet",
            "batch": BATCH_SIZE,
            **time_ms(lambda: torch_forward(batch), runs=runs, warmup=warmup),
        },
        {
            "name": "dlib compute_face_descriptor(chip)",
            "batch": 1,
            **time_ms(lambda: recognizer.compute_face_descriptor(chips[0]), runs=dlib_runs, warmup=1),
        },
        {
            "name": "dlib compute_face_descriptor(list)",
            "batch": BATCH_SIZE,
            **time_ms(lambda: recognizer.compute_face_descriptor(chip_list), runs=dlib_runs, warmup=1),
        },
    ]
    for result in results:
        result["per_face_ms"] = result["median_ms"] / result["batch"]

    # parity on the same chips
    ours = torch_forward(batch).double().numpy()
    reference = np.array([np.asarray(vector) for vector in recognizer.compute_face_descriptor(chip_list)])
    cosine = (ours * reference).sum(axis=1) / (
        np.linalg.norm(ours, axis=1) * np.linalg.norm(reference, axis=1)
    )

    return {
        "chips": len(chips),
        "runs": runs,
        "warmup": warmup,
        "dlib_runs": dlib_runs,
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "dlib_version": dlib.__version__,
        "cpu": platform.processor() or platform.machine(),
        "results": results,
        "parity": {
            "min_cosine": float(cosine.min()),
            "max_abs_diff": float(np.abs(ours - reference).max()),
        },
    }


def print_table(report: dict[str, Any]) -> None:
    print(
        f"{report['chips']} LFW chips, torch {report['torch_version']} "
        f"with {report['torch_threads']} threads, "
        f"dlib {report['dlib_version']}; torch: {report['runs']} runs after {report['warmup']} warm-up, "
        f"dlib: {report['dlib_runs']} runs after 1 warm-up"
    )
    print(f"{'embedder':<38} {'batch':>5} {'median ms':>10} {'p95 ms':>8} {'ms/face':>8}")
    for result in report["results"]:
        print(
            f"{result['name']:<38} {result['batch']:>5} {result['median_ms']:>10.1f} "
            f"{result['p95_ms']:>8.1f} {result['per_face_ms']:>8.1f}"
        )
    parity = report["parity"]
    print(f"parity vs dlib: min cosine {parity['min_cosine']:.8f}, max abs diff {parity['max_abs_diff']:.2e}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    parser.add_argument("--runs", type=int, default=30, help="timed runs of the torch model per batch size")
    parser.add_argument("--warmup", type=int, default=5, help="untimed warm-up runs of the torch model")
    parser.add_argument(
        "--dlib-runs", type=int, default=10, help="timed runs of dlib per batch size (about 1 s each at 16)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)"
    )
    args = parser.parse_args(argv)

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    report = run_benchmark(runs=args.runs, warmup=args.warmup, dlib_runs=args.dlib_runs)
    if args.json:
        print(json.dumps(report))
    else:
        print_table(report)


if __name__ == "__main__":
    main()
