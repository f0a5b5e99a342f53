"""LFW closed- and open-set identification with 1, 2 and 5 enrollment photos per person.

Run from the repository root (needs the LFW photos in ../shared/data/faces, or --lfw-root):

    .venv/bin/python -m bench.identify           # readable table
    .venv/bin/python -m bench.identify --json    # one JSON object on stdout

Gallery: the LFW identities with at least 10 photos (158). With k enrollment photos, each
person's first k photos (by file number) are enrolled, and each of their other photos is a
probe. A probe's score for a person is the highest cosine similarity (dot product of unit
embeddings) to that person's enrolled faces, as a gallery search over faces returns it.

- rank-1: the fraction of probes whose best-scoring person is the right one. Probes without a
  detected face count as wrong.
- Unknowns: 1,000 people not enrolled (a fixed sample, seed 0, of the identities with fewer
  than 10 photos), their first photo each. A false accept is an unknown whose best score is
  >= the threshold; unknowns without a detected face are never accepted but stay in the rate.
- DIR (detection and identification rate): the fraction of probes whose best-scoring person is
  the right one with a score >= the threshold, reported at the embedder's default threshold
  and at the threshold where 1% of the unknowns are falsely accepted.

Photos are embedded end to end from the JPEG files with FacePipeline, sharing bench.lfw's cache.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from bench.common import (
    REPO_ROOT,
    EmbeddingCache,
    EmbeddingTable,
    add_common_arguments,
    build_pipeline,
    embed_images,
    emit,
    list_identities,
    resolve_lfw,
    threshold_at_far,
)

MIN_PHOTOS = 10  # photos an identity needs to be enrolled
ENROLLMENT_COUNTS = (1, 2, 5)
UNKNOWNS = 1000
UNKNOWN_SEED = 0
OPEN_SET_FAR = 0.01  # false accept rate over the unknowns for the DIR at a fixed FAR


def choose_people(identities: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """Return (enrolled names, unknown names): identities with >= MIN_PHOTOS photos, and a
    seeded sample of UNKNOWNS identities with fewer."""
    enrolled = [name for name, photos in identities.items() if len(photos) >= MIN_PHOTOS]
    others = sorted(name for name, photos in identities.items() if len(photos) < MIN_PHOTOS)
    rng = np.random.default_rng(UNKNOWN_SEED)
    unknown = sorted(rng.choice(others, size=min(UNKNOWNS, len(others)), replace=False).tolist())
    return sorted(enrolled), unknown


def best_matches(
    probes: np.ndarray, gallery: np.ndarray, owners: np.ndarray, people: int
) -> tuple[np.ndarray, np.ndarray]:
    """Return each probe's best-scoring person and that score.

    probes: (P, D) unit embeddings; gallery: (G, D) unit embeddings of enrolled faces;
    owners: (G,) person index of each enrolled face. A person's score is the maximum over
    their faces, and people without an enrolled face score -inf.
    """
    similarities = probes @ gallery.T  # (P, G)
    scores = np.full((len(probes), people), -np.inf, np.float32)  # (P, people)
    for person in range(people):
        columns = owners == person
        if columns.any():
            scores[:, person] = similarities[:, columns].max(axis=1)
    best = scores.argmax(axis=1) if people else np.zeros(len(probes), np.int64)
    return best, scores[np.arange(len(probes)), best]


def evaluate_enrollment(
    table: EmbeddingTable,
    enrolled: list[str],
    photos: dict[str, list[str]],
    unknown_paths: list[str],
    enrollment_count: int,
    default_threshold: float,
) -> dict[str, Any]:
    """Compute the identification rates with each person's first `enrollment_count` photos enrolled."""
    index = table.index
    gallery_rows, gallery_owners, probe_rows, probe_truth = [], [], [], []
    for person, name in enumerate(enrolled):
        for position, path in enumerate(photos[name]):
            if position < enrollment_count:
                gallery_rows.append(index[path])
                gallery_owners.append(person)
            else:
                probe_rows.append(index[path])
                probe_truth.append(person)
    gallery_rows_array = np.array(gallery_rows)
    gallery_found = table.found[gallery_rows_array]
    gallery = table.embeddings[gallery_rows_array[gallery_found]]  # (G, D)
    owners = np.array(gallery_owners)[gallery_found]

    # Enrolled people's probes.
    probe_rows_array = np.array(probe_rows)
    probe_found = table.found[probe_rows_array]
    best, score = best_matches(table.embeddings[probe_rows_array], gallery, owners, len(enrolled))
    correct = probe_found & (best == np.array(probe_truth))
    score = np.where(probe_found, score, -np.inf)

    # Unknown people: only their best score matters.
    unknown_rows = np.array([index[path] for path in unknown_paths])
    unknown_found = table.found[unknown_rows]
    _, unknown_score = best_matches(table.embeddings[unknown_rows], gallery, owners, len(enrolled))
    unknown_score = np.where(unknown_found, unknown_score, -np.inf)

    far_threshold = threshold_at_far(unknown_score[unknown_found], OPEN_SET_FAR, total=len(unknown_rows))
    return {
        "enrollment_photos": enrollment_count,
        "probes": len(probe_rows),
        "probe_detection_failures": int(np.count_nonzero(~probe_found)),
        "enrolled_faces": len(gallery),
        "enrollment_detection_failures": int(np.count_nonzero(~gallery_found)),
        "people_without_enrolled_face": int(len(enrolled) - len(np.unique(owners))),
        "rank1": float(correct.mean()),
        "far_at_default_threshold": float(np.count_nonzero(unknown_score >= default_threshold) / len(unknown_rows)),
        "dir_at_default_threshold": float(np.count_nonzero(correct & (score >= default_threshold)) / len(probe_rows)),
        "threshold_at_far_1e-2": far_threshold,
        "dir_at_far_1e-2": float(np.count_nonzero(correct & (score >= far_threshold)) / len(probe_rows)),
    }


def format_table(report: dict[str, Any]) -> str:
    lines = [
        f"LFW identification, {report['embedder']}: {report['identities']} enrolled people "
        f"(>= {MIN_PHOTOS} photos), {report['unknowns']} unknown people, {report['images']} photos "
        f"({report['embedded_images']} embedded now, the rest cached), {report['seconds']:.1f} s",
        f"  unknowns without a face: {report['unknown_detection_failures']}; "
        f"default threshold {report['default_threshold']:.3f}",
        "",
        "  enrolled  probes  no-face  rank-1   FAR@default  DIR@default  threshold@FAR1%  DIR@FAR1%",
    ]
    for result in report["results"]:
        lines.append(
            f"  {result['enrollment_photos']:>8}  {result['probes']:>6}  {result['probe_detection_failures']:>7}  "
            f"{result['rank1']:.4f}   {result['far_at_default_threshold']:.4f}       "
            f"{result['dir_at_default_threshold']:.4f}       {result['threshold_at_far_1e-2']:.4f}           "
            f"{result['dir_at_far_1e-2']:.4f}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.identify", description=__doc__.split("\n")[0])
    add_common_arguments(parser)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    lfw = resolve_lfw(args.lfw_root)
    photos = list_identities(lfw.images_dir)
    enrolled, unknown = choose_people(photos)
    unknown_paths = [photos[name][0] for name in unknown]
    paths = [path for name in enrolled for path in photos[name]] + unknown_paths

    pipeline = build_pipeline(args.embedder, args.device, args.threads, tta=not args.no_tta)
    cache = EmbeddingCache.for_pipeline(pipeline)
    table = embed_images(
        pipeline, lfw.images_dir, paths, cache, batch_size=args.batch_size, progress=not args.no_progress
    )
    default_threshold = pipeline.embedder.threshold
    results = [
        evaluate_enrollment(table, enrolled, photos, unknown_paths, count, default_threshold)
        for count in ENROLLMENT_COUNTS
    ]

    # The headline numbers are those of one enrollment photo per person.
    headline = results[0]
    unknown_found = table.found[[table.index[path] for path in unknown_paths]]
    report: dict[str, Any] = {
        "embedder": pipeline.embedder_id,
        "test_time_views": len(pipeline.embedder.views) if pipeline.config.test_time_augmentation else 1,
        "device": str(pipeline.device),
        "identities": len(enrolled),
        "unknowns": len(unknown),
        "images": len(paths),
        "default_threshold": default_threshold,
        "rank1": headline["rank1"],
        "probes": headline["probes"],
        "probe_detection_failures": headline["probe_detection_failures"],
        "far_at_default_threshold": headline["far_at_default_threshold"],
        "dir_at_default_threshold": headline["dir_at_default_threshold"],
        "threshold_at_far_1e-2": headline["threshold_at_far_1e-2"],
        "dir_at_far_1e-2": headline["dir_at_far_1e-2"],
        "unknown_detection_failures": int(np.count_nonzero(~unknown_found)),
        "detection_failures": int(np.count_nonzero(~table.found)),
        "results": results,
        "embedded_images": table.embedded,
        "embed_seconds": round(table.seconds, 2),
        "cache": str(cache.path.relative_to(REPO_ROOT)),
    }
    report["seconds"] = round(time.perf_counter() - start, 2)
    emit(report, format_table(report), args.json)


if __name__ == "__main__":
    main()
