"""LFW verification accuracy, end to end from the JPEG files, and threshold calibration.

Run from the repository root (needs the LFW photos in ../shared/data/faces, or --lfw-root):

    .venv/bin/python -m bench.lfw                          # View 2, 10-fold, readable table
    .venv/bin/python -m bench.lfw --json                   # one JSON object on stdout
    .venv/bin/python -m bench.lfw --limit-pairs 60 --json  # quick run on 60 of the 6,000 pairs
    .venv/bin/python -m bench.lfw --calibrate              # also calibrate the default threshold

View 2 (pairs.txt, 6,000 pairs in 10 folds of 300 same and 300 different): every photo is
decoded, detected, aligned and embedded by FacePipeline; a photo showing several faces uses the
face nearest the image centre. Pair similarity is the cosine of the two embeddings. For each
fold the threshold with the highest accuracy on the other 9 folds is applied to it; the table
reports the mean fold accuracy and the sample std over folds (ddof=1). A pair with a photo
without a detected face counts as wrong at every threshold. TAR at FAR 1e-3 pools all pairs:
the threshold lets at most 0.1% of the different-identity pairs pass (3 of 3,000), and pairs
without a face are never accepted.

--calibrate embeds every photo of the identities in pairsDevTrain.txt (View 1 training split,
never View 2), scores all cross-identity photo pairs (impostors) and all same-identity pairs
(genuine), and prints the thresholds at FAR 1e-3 and 1e-4 with the TAR at each, in a form to
paste into models/embedders.py.

Embeddings are cached in .cache/bench/ (see bench.common.EmbeddingCache), so reruns with the
same models, templates and detector settings only redo the metrics.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.common import (
    EmbeddingCache,
    EmbeddingTable,
    REPO_ROOT,
    LfwPaths,
    Pair,
    accuracy_at,
    add_common_arguments,
    best_threshold,
    build_pipeline,
    embed_images,
    emit,
    list_identities,
    pair_arrays,
    parse_pairs,
    resolve_lfw,
    tar_at_far,
    threshold_at_far,
)
from models.pipeline import FacePipeline

CALIBRATION_FARS = {"1e-3": 1e-3, "1e-4": 1e-4}  # key suffix -> false accept rate
CALIBRATION_BLOCK_ROWS = 512  # embedding rows per block of the impostor similarity matrix


# protocol


def limit_pairs(pairs: Sequence[Pair], limit: int) -> list[Pair]:
    """Select a quick subset of about `limit` pairs that keeps every fold and both classes.

    From each fold it takes the first ceil(limit / (2 * folds)) same-identity pairs and as many
    different-identity pairs, in file order. So the result has at least `limit` pairs (60 on
    pairs.txt gives 3 + 3 per fold), and every fold still has both classes to learn a
    threshold from.
    """
    folds = sorted({pair.fold for pair in pairs})
    per_class = max(1, math.ceil(limit / (2 * len(folds))))
    selected = []
    for fold in folds:
        for same in (True, False):
            selected.extend([pair for pair in pairs if pair.fold == fold and pair.same == same][:per_class])
    return selected


@dataclass
class FoldResult:
    accuracies: np.ndarray  # (F,) accuracy of each held-out fold, failures counted as wrong
    thresholds: np.ndarray  # (F,) threshold chosen on the other folds
    accuracies_excluding_failures: np.ndarray  # (F,) accuracy over the fold's pairs that have both faces


def kfold_accuracy(similarities: np.ndarray, same: np.ndarray, valid: np.ndarray, folds: np.ndarray) -> FoldResult:
    """Choose each fold's threshold on the other folds and score the fold with it."""
    accuracies, thresholds, excluding = [], [], []
    for fold in np.unique(folds):
        test = folds == fold
        threshold = best_threshold(similarities[~test], same[~test], valid[~test])
        thresholds.append(threshold)
        accuracies.append(accuracy_at(similarities[test], same[test], valid[test], threshold))
        test_with_faces = test & valid
        excluding.append(
            accuracy_at(similarities[test_with_faces], same[test_with_faces], valid[test_with_faces], threshold)
        )
    return FoldResult(np.array(accuracies), np.array(thresholds), np.array(excluding))


def pair_similarities(
    table: EmbeddingTable, pairs: Sequence[Pair]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (similarities, same, valid, folds) of the pairs; invalid pairs get similarity NaN."""
    left, right, same, folds = pair_arrays(pairs, table.index)
    valid = table.found[left] & table.found[right]
    similarities = np.einsum("pd,pd->p", table.embeddings[left], table.embeddings[right])  # (P,)
    similarities = np.where(valid, similarities, np.nan)
    return similarities, same, valid, folds


def evaluate_view2(
    pipeline: FacePipeline, lfw: LfwPaths, cache: EmbeddingCache, *, limit: int | None, batch_size: int, progress: bool
) -> dict[str, Any]:
    """Run the View 2 protocol (or its --limit-pairs subset) and return the metrics."""
    pairs = parse_pairs(lfw.pairs)
    if limit is not None:
        pairs = limit_pairs(pairs, limit)
    paths = list(dict.fromkeys(path for pair in pairs for path in (pair.left_path, pair.right_path)))
    table = embed_images(pipeline, lfw.images_dir, paths, cache, batch_size=batch_size, progress=progress)

    similarities, same, valid, folds = pair_similarities(table, pairs)
    fold_result = kfold_accuracy(similarities, same, valid, folds)
    tar, far_threshold = tar_at_far(similarities, same, valid, 1e-3)
    default_threshold = pipeline.embedder.threshold
    accepted = valid & (similarities >= default_threshold)

    return {
        "accuracy": float(fold_result.accuracies.mean()),
        "accuracy_std": float(fold_result.accuracies.std(ddof=1)) if len(fold_result.accuracies) > 1 else 0.0,
        "accuracy_excluding_failures": float(np.nanmean(fold_result.accuracies_excluding_failures)),
        "fold_accuracies": fold_result.accuracies.round(6).tolist(),
        "fold_thresholds": fold_result.thresholds.round(6).tolist(),
        "tar_at_far_1e-3": tar,
        "threshold_at_far_1e-3": far_threshold,
        "default_threshold": default_threshold,
        "accuracy_at_default_threshold": accuracy_at(similarities, same, valid, default_threshold),
        "tar_at_default_threshold": float(np.count_nonzero(accepted & same) / np.count_nonzero(same)),
        "far_at_default_threshold": float(np.count_nonzero(accepted & ~same) / np.count_nonzero(~same)),
        "pairs": len(pairs),
        "same_pairs": int(np.count_nonzero(same)),
        "folds": len(fold_result.accuracies),
        "images": len(paths),
        "detection_failures": int(np.count_nonzero(~table.found)),
        "pairs_with_failures": int(np.count_nonzero(~valid)),
        "multi_face_images": int(np.count_nonzero(table.face_counts > 1)),
        "embedded_images": table.embedded,
        "embed_seconds": round(table.seconds, 2),
    }


# calibration


def calibrate(
    pipeline: FacePipeline, lfw: LfwPaths, cache: EmbeddingCache, *, batch_size: int, progress: bool
) -> dict[str, Any]:
    """Compute the thresholds at FAR 1e-3 and 1e-4 from every photo pair of the DevTrain identities."""
    names = sorted({name for pair in parse_pairs(lfw.dev_train) for name in (pair.left_name, pair.right_name)})
    photos = list_identities(lfw.images_dir)
    missing = [name for name in names if name not in photos]
    if missing:
        raise SystemExit(
            f"{len(missing)} DevTrain identities have no photos in {lfw.images_dir}, e.g. {missing[0]}. "
            "Pass --lfw-root with a complete LFW copy."
        )
    paths = [path for name in names for path in photos[name]]
    owners = np.array([row for row, name in enumerate(names) for _ in photos[name]])
    table = embed_images(pipeline, lfw.images_dir, paths, cache, batch_size=batch_size, progress=progress)

    embeddings = table.embeddings[table.found]  # (N, D)
    owners = owners[table.found]
    impostor, genuine = all_pair_similarities(embeddings, owners)

    result: dict[str, Any] = {
        "split": "DevTrain identities (pairsDevTrain.txt), all their photos",
        "identities": len(names),
        "images": len(paths),
        "detection_failures": int(np.count_nonzero(~table.found)),
        "impostor_pairs": len(impostor),
        "genuine_pairs": len(genuine),
        "impostor_mean": float(impostor.mean()),
        "impostor_std": float(impostor.std()),
        "genuine_mean": float(genuine.mean()),
    }
    for suffix, far in CALIBRATION_FARS.items():
        threshold = threshold_at_far(impostor, far)
        result[f"threshold_at_far_{suffix}"] = threshold
        result[f"tar_at_far_{suffix}"] = float(np.count_nonzero(genuine >= threshold) / len(genuine))
    return result


def all_pair_similarities(embeddings: np.ndarray, owners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity of every unordered pair of rows: (impostor, genuine) float32 arrays.

    embeddings: (N, D) unit rows; owners: (N,) identity of each row. Computed in row blocks so
    the full (N, N) matrix never sits in memory.
    """
    impostor, genuine = [], []
    for start in range(0, len(embeddings), CALIBRATION_BLOCK_ROWS):
        stop = min(start + CALIBRATION_BLOCK_ROWS, len(embeddings))
        block = embeddings[start:stop] @ embeddings.T  # (b, N)
        rows = np.arange(start, stop)[:, None]
        upper = np.arange(len(embeddings))[None, :] > rows  # each unordered pair once, no self pairs
        same_owner = owners[start:stop, None] == owners[None, :]
        impostor.append(block[upper & ~same_owner])
        genuine.append(block[upper & same_owner])
    return np.concatenate(impostor), np.concatenate(genuine)


def paste_lines(embedder_id: str, calibration: dict[str, Any]) -> str:
    """Format the threshold lines for models/embedders.py, rounded up to 3 decimals so FAR stays <= 1e-3."""
    threshold = calibration["threshold_at_far_1e-3"]
    rounded = math.ceil(threshold * 1000) / 1000
    return (
        f"    # Calibrated for {embedder_id} at FAR 1e-3 on {calibration['impostor_pairs']:,} impostor pairs of\n"
        f"    # LFW DevTrain identities ({calibration['images']:,} photos) with `python -m bench.lfw --calibrate`;\n"
        f"    # TAR {calibration['tar_at_far_1e-3']:.4f} on {calibration['genuine_pairs']:,} genuine pairs.\n"
        f"    threshold = {rounded:.3f}"
    )


# output


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"LFW View 2, {report['embedder']}: {report['pairs']} pairs in {report['folds']} folds, "
        f"{report['images']} photos ({report['embedded_images']} embedded now, the rest cached), "
        f"{report['seconds']:.1f} s",
        f"  accuracy (10-fold)            {report['accuracy']:.4f} +- {report['accuracy_std']:.4f}",
        f"  accuracy excluding failures   {report['accuracy_excluding_failures']:.4f}",
        f"  TAR at FAR 1e-3               {report['tar_at_far_1e-3']:.4f} "
        f"(threshold {report['threshold_at_far_1e-3']:.4f})",
        f"  accuracy at default threshold {report['accuracy_at_default_threshold']:.4f} "
        f"(threshold {report['default_threshold']:.3f}: TAR {report['tar_at_default_threshold']:.4f}, "
        f"FAR {report['far_at_default_threshold']:.4f})",
        f"  photos without a face         {report['detection_failures']} "
        f"({report['pairs_with_failures']} pairs counted as wrong)",
        f"  photos with several faces     {report['multi_face_images']} (the face nearest the centre is used)",
    ]
    calibration = report.get("calibration")
    if calibration:
        lines += [
            "",
            f"Calibration on {calibration['split']}: {calibration['identities']} identities, "
            f"{calibration['images']} photos ({calibration['detection_failures']} without a face), "
            f"{calibration['impostor_pairs']:,} impostor and {calibration['genuine_pairs']:,} genuine pairs",
        ]
        for suffix in CALIBRATION_FARS:
            lines.append(
                f"  FAR {suffix}: threshold {calibration[f'threshold_at_far_{suffix}']:.4f}, "
                f"TAR {calibration[f'tar_at_far_{suffix}']:.4f}"
            )
        lines += ["", "For models/embedders.py:", paste_lines(report["embedder"], calibration)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.lfw", description=__doc__.split("\n")[0])
    add_common_arguments(parser)
    parser.add_argument(
        "--limit-pairs",
        type=int,
        default=None,
        help="quick run on about N pairs: the first N/20 same and N/20 different pairs of each fold",
    )
    parser.add_argument(
        "--calibrate", action="store_true", help="also calibrate the default threshold on DevTrain identities"
    )
    args = parser.parse_args(argv)
    if args.limit_pairs is not None and args.limit_pairs < 1:
        parser.error(f"--limit-pairs must be at least 1, got {args.limit_pairs}")

    start = time.perf_counter()
    lfw = resolve_lfw(args.lfw_root)
    pipeline = build_pipeline(args.embedder, args.device, args.threads, tta=not args.no_tta)
    cache = EmbeddingCache.for_pipeline(pipeline)
    progress = not args.no_progress

    report: dict[str, Any] = {
        "embedder": pipeline.embedder_id,
        "device": str(pipeline.device),
        "test_time_views": len(pipeline.embedder.views) if pipeline.config.test_time_augmentation else 1,
    }
    report.update(
        evaluate_view2(pipeline, lfw, cache, limit=args.limit_pairs, batch_size=args.batch_size, progress=progress)
    )
    if args.calibrate:
        report["calibration"] = calibrate(pipeline, lfw, cache, batch_size=args.batch_size, progress=progress)
    report["cache"] = str(cache.path.relative_to(REPO_ROOT))
    report["seconds"] = round(time.perf_counter() - start, 2)
    emit(report, format_table(report), args.json)


if __name__ == "__main__":
    main()
