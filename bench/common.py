"""Shared pieces of the LFW benchmarks (bench.lfw, bench.identify).

- LFW paths: the deep-funneled photos at lfw-deepfunneled/NAME/NAME_%04d.jpg and the pair lists
  (pairs.txt, pairsDevTrain.txt, pairsDevTest.txt), under `--lfw-root`.
- Pair-list parsing. pairs.txt (View 2) starts with "10 300": 10 folds, each 300 same-identity
  lines `name i j` followed by 300 different-identity lines `name1 i name2 j`. The View 1 lists
  start with one count N: N same lines, then N different lines (one fold).
- Embedding LFW photos end to end with FacePipeline (decode, detect, align, embed), one face per
  photo, with an on-disk cache under .cache/bench/ that any change to alignment or detection
  invalidates.
- Threshold metrics shared by verification and identification: the best-accuracy threshold and
  the threshold and TAR at a false accept rate.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.alignment import AlignmentTemplate
from models.detector import Detection, DetectorConfig
from models.errors import FacegateError
from models.imaging import load_image
from models.pipeline import FacePipeline, PipelineConfig

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LFW_ROOT = REPO_ROOT / ".." / "shared" / "data" / "faces" / "lfw"
CACHE_DIR = REPO_ROOT / ".cache" / "bench"

# Bump when the way a cached embedding is made changes in a way the cache key cannot see
# (face choice, image decoding, anything in the pipeline outside models/alignment.py and
# models/detector.py).
CACHE_VERSION = 1

# Source files whose content is part of the cache key, so an edit to the warp, the template
# constants or the detector's post-processing invalidates cached embeddings.
KEYED_SOURCES = (
    "models/alignment.py",
    "models/detector.py",
    "models/embedders.py",
    "models/pipeline.py",
    "models/dlib_resnet.py",
)

BATCH_SIZE = 16  # images per analyze_batch call; LFW photos are all 250x250, so one MTCNN batch
SAVE_EVERY_S = 60.0  # seconds between partial cache saves while embedding


# paths


@dataclass(frozen=True)
class LfwPaths:
    root: Path
    images_dir: Path  # lfw-deepfunneled/
    pairs: Path  # View 2
    dev_train: Path  # View 1 training pairs
    dev_test: Path  # View 1 test pairs


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the flags every LFW benchmark takes: data root, embedder, device, batch size, output."""
    parser.add_argument(
        "--lfw-root",
        type=Path,
        default=DEFAULT_LFW_ROOT,
        help="folder holding lfw-deepfunneled/ and the pair lists (default: ../shared/data/faces/lfw "
        "beside the repository)",
    )
    parser.add_argument("--embedder", default="dlib-resnet", help="embedder id (default: dlib-resnet)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    parser.add_argument(
        "--batch-size", type=int, default=BATCH_SIZE, help=f"images per pipeline call (default: {BATCH_SIZE})"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--no-tta",
        action="store_true",
        help="embed one crop per face instead of averaging the embedder's test-time views",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object on stdout, the table on stderr")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def resolve_lfw(root: Path) -> LfwPaths:
    """Return the LFW paths under `root`, or exit with a message naming what is missing."""
    root = root.resolve()
    paths = LfwPaths(
        root=root,
        images_dir=root / "lfw-deepfunneled",
        pairs=root / "pairs.txt",
        dev_train=root / "pairsDevTrain.txt",
        dev_test=root / "pairsDevTest.txt",
    )
    missing = [path for path in (paths.images_dir, paths.pairs, paths.dev_train) if not path.exists()]
    if missing:
        sys.exit(
            f"LFW data not found: missing {', '.join(str(path) for path in missing)}. "
            "Pass --lfw-root with the folder that contains lfw-deepfunneled/, pairs.txt and pairsDevTrain.txt."
        )
    return paths


def image_path(name: str, index: int) -> str:
    """Return the photo path relative to lfw-deepfunneled/, e.g. Aaron_Peirsol/Aaron_Peirsol_0001.jpg."""
    return f"{name}/{name}_{index:04d}.jpg"


def list_identities(images_dir: Path) -> dict[str, list[str]]:
    """Map each identity folder to its photo paths (relative to images_dir), sorted by name."""
    identities: dict[str, list[str]] = {}
    for folder in sorted(images_dir.iterdir()):
        if folder.is_dir():
            photos = sorted(f"{folder.name}/{photo.name}" for photo in folder.glob("*.jpg"))
            if photos:
                identities[folder.name] = photos
    return identities


# pair lists


class PairListError(FacegateError):
    """A pair list does not follow the LFW pairs.txt format."""

    code = "invalid-pair-list"


@dataclass(frozen=True)
class Pair:
    fold: int  # 0-based; View 1 lists are a single fold 0
    same: bool  # True for a same-identity pair
    left_name: str
    left_index: int  # 1-based photo number, as in the file name
    right_name: str
    right_index: int

    @property
    def left_path(self) -> str:
        return image_path(self.left_name, self.left_index)

    @property
    def right_path(self) -> str:
        return image_path(self.right_name, self.right_index)


def parse_pairs(path: Path) -> list[Pair]:
    """Read an LFW pair list ("FOLDS N" or "N" header, then per fold N same and N different lines)."""
    lines = [line.split() for line in Path(path).read_text().splitlines()]
    lines = [tokens for tokens in lines if tokens]  # tolerate blank lines, e.g. a trailing newline
    if not lines:
        raise PairListError(f"Pair list {path} is empty.", value=str(path), hint="Use pairs.txt or pairsDevTrain.txt.")

    header = lines[0]
    try:
        folds, per_class = (1, int(header[0])) if len(header) == 1 else (int(header[0]), int(header[1]))
    except (ValueError, IndexError):
        raise PairListError(
            f"Pair list {path} has an invalid header {' '.join(header)!r}.",
            value=" ".join(header),
            hint='The first line must be "FOLDS PAIRS_PER_CLASS" (pairs.txt) or "PAIRS_PER_CLASS" (View 1).',
        ) from None
    body = lines[1:]
    if len(header) > 2 or len(body) != folds * 2 * per_class:
        raise PairListError(
            f"Pair list {path} has {len(body)} pair lines, but its header {' '.join(header)!r} "
            f"announces {folds * 2 * per_class}.",
            value=len(body),
            hint="Use an unmodified LFW pair list.",
        )

    pairs = []
    for offset, tokens in enumerate(body):
        fold, position = divmod(offset, 2 * per_class)
        same = position < per_class
        line_number = offset + 2
        try:
            if same and len(tokens) == 3:
                pairs.append(Pair(fold, True, tokens[0], int(tokens[1]), tokens[0], int(tokens[2])))
                continue
            if not same and len(tokens) == 4:
                pairs.append(Pair(fold, False, tokens[0], int(tokens[1]), tokens[2], int(tokens[3])))
                continue
        except ValueError:
            pass
        expected = "NAME I J (same identity)" if same else "NAME1 I NAME2 J (different identities)"
        raise PairListError(
            f"Line {line_number} of pair list {path} is {' '.join(tokens)!r}; expected {expected}.",
            value=" ".join(tokens),
            hint="Use an unmodified LFW pair list.",
        )
    return pairs


def pair_arrays(pairs: Sequence[Pair], index: dict[str, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return (left rows, right rows, same, fold) arrays of the pairs, rows looked up in `index`."""
    left = np.array([index[pair.left_path] for pair in pairs], dtype=np.int64)
    right = np.array([index[pair.right_path] for pair in pairs], dtype=np.int64)
    same = np.array([pair.same for pair in pairs], dtype=bool)
    fold = np.array([pair.fold for pair in pairs], dtype=np.int64)
    return left, right, same, fold


# embedding cache


def cache_key(
    embedder_id: str,
    template: AlignmentTemplate,
    detector: DetectorConfig,
    weights: str | os.PathLike | None = None,
    sources: Sequence[Path] | None = None,
    test_time_augmentation: bool = True,
) -> str:
    """Return a hex digest of everything that decides a cached embedding.

    `sources` are files whose content is hashed as well (default: KEYED_SOURCES).
    """
    source_paths = [REPO_ROOT / name for name in KEYED_SOURCES] if sources is None else list(sources)
    payload = {
        "version": CACHE_VERSION,
        "embedder": embedder_id,
        "weights": None if weights is None else str(Path(weights).resolve()),
        "template": {
            # Every field (name, size, points, fit weights, ...), so new template fields count too.
            field.name: _json_value(getattr(template, field.name))
            for field in dataclasses.fields(template)
        },
        "detector": dataclasses.asdict(detector),
        "test_time_augmentation": test_time_augmentation,
        "sources": {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in source_paths},
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _json_value(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return np.asarray(value, dtype=np.float64).round(6).tolist()
    return value


class EmbeddingCache:
    """Per photo path: the embedding of the chosen face, or None when no face was detected.

    Stored as one .npz file per cache key, written atomically (temporary file, then rename).
    NOTE: two benchmarks writing the same key at once each keep only their own additions.
    """

    def __init__(self, path: Path, dimension: int) -> None:
        self.path = path
        self.dimension = dimension
        self.embeddings: dict[str, np.ndarray | None] = {}
        self.face_counts: dict[str, int] = {}  # faces detected in the photo, the chosen one included
        self._dirty = False
        if path.exists():
            with np.load(path, allow_pickle=False) as data:
                # Each data[...] access decompresses the array again, so read each once.
                names, matrix, found, counts = data["paths"], data["embeddings"], data["found"], data["face_counts"]
            for row, name in enumerate(names.tolist()):
                self.embeddings[name] = matrix[row] if found[row] else None
                self.face_counts[name] = int(counts[row])

    @classmethod
    def for_pipeline(cls, pipeline: FacePipeline, cache_dir: Path = CACHE_DIR) -> EmbeddingCache:
        key = cache_key(
            pipeline.embedder_id,
            pipeline.embedder.template,
            pipeline.config.detector,
            pipeline.config.embedder_weights,
            test_time_augmentation=pipeline.config.test_time_augmentation,
        )
        return cls(cache_dir / f"{pipeline.embedder_id}-{key[:16]}.npz", pipeline.embedder.dimension)

    def __contains__(self, name: str) -> bool:
        return name in self.embeddings

    def put(self, name: str, embedding: np.ndarray | None, face_count: int) -> None:
        self.embeddings[name] = embedding
        self.face_counts[name] = face_count
        self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        names = list(self.embeddings)
        matrix = np.zeros((len(names), self.dimension), np.float32)  # (N, D); zero rows for no face
        found = np.zeros(len(names), bool)
        for row, name in enumerate(names):
            embedding = self.embeddings[name]
            if embedding is not None:
                matrix[row] = embedding
                found[row] = True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        with open(temporary, "wb") as file:
            np.savez(
                file,
                paths=np.array(names, dtype=str),
                embeddings=matrix,
                found=found,
                face_counts=np.array([self.face_counts[name] for name in names], np.int32),
            )
        os.replace(temporary, self.path)
        self._dirty = False


# embedding photos


@dataclass
class EmbeddingTable:
    """Embeddings of a list of photos, in the order given."""

    paths: list[str]
    embeddings: np.ndarray  # (N, D) float32, unit L2 norm; zero rows where found is False
    found: np.ndarray  # (N,) bool: a face was detected
    face_counts: np.ndarray  # (N,) int: faces detected per photo
    embedded: int  # photos run through the pipeline in this call (the rest came from the cache)
    seconds: float  # wall time of this call

    @property
    def index(self) -> dict[str, int]:
        return {path: row for row, path in enumerate(self.paths)}


def build_pipeline(embedder: str, device: str, threads: int | None, *, tta: bool = True) -> FacePipeline:
    return FacePipeline(
        PipelineConfig(embedder=embedder, device=device, num_threads=threads, test_time_augmentation=tta)
    )


def central_face(detections: Sequence[Detection], width: int, height: int) -> int:
    """Return the index of the detection whose bbox centre is nearest the image centre.

    LFW photos are cropped around the labelled person, so when a photo shows several people
    the labelled one is the face in the middle.
    """
    centre_x, centre_y = (width - 1) / 2, (height - 1) / 2  # pixel centres at integer coordinates

    def distance(detection: Detection) -> float:
        x1, y1, x2, y2 = detection.bbox
        return math.hypot((x1 + x2) / 2 - centre_x, (y1 + y2) / 2 - centre_y)

    return min(range(len(detections)), key=lambda i: distance(detections[i]))


def embed_images(
    pipeline: FacePipeline,
    images_dir: Path,
    paths: Sequence[str],
    cache: EmbeddingCache,
    *,
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
) -> EmbeddingTable:
    """Embed the central face of each photo (paths relative to images_dir), end to end from the
    JPEG file, reusing and filling the cache.

    Photos are decoded with load_image and run through FacePipeline.analyze_batch, as the
    service runs them. No quality policy is applied, because the benchmark measures every
    detected face. Partial results are
    saved every SAVE_EVERY_S seconds and on exit (an interrupt included), so a rerun resumes.
    """
    # tqdm is a benchmark-only dependency; the protocol tests import this module without it.
    from tqdm import tqdm

    start = time.perf_counter()
    unique_paths = list(dict.fromkeys(paths))
    todo = [path for path in unique_paths if path not in cache]
    last_save = time.perf_counter()
    try:
        with tqdm(total=len(todo), unit="img", desc="embedding", disable=not progress or not todo) as bar:
            for chunk_start in range(0, len(todo), batch_size):
                chunk = todo[chunk_start : chunk_start + batch_size]
                images = [load_image(images_dir / path) for path in chunk]
                # The service's own path: every face is embedded, then the central one is kept.
                analyses = pipeline.analyze_batch(images, embed=True)
                for path, analysis in zip(chunk, analyses):
                    embedding = None
                    if analysis.faces:
                        detections = [face.detection for face in analysis.faces]
                        embedding = analysis.faces[central_face(detections, analysis.width, analysis.height)].embedding
                    cache.put(path, embedding, len(analysis.faces))

                bar.update(len(chunk))
                if time.perf_counter() - last_save > SAVE_EVERY_S:
                    cache.save()
                    last_save = time.perf_counter()
    finally:
        cache.save()

    dimension = cache.dimension
    matrix = np.zeros((len(paths), dimension), np.float32)
    found = np.zeros(len(paths), bool)
    face_counts = np.zeros(len(paths), np.int32)
    for row, path in enumerate(paths):
        embedding = cache.embeddings[path]
        face_counts[row] = cache.face_counts[path]
        if embedding is not None:
            matrix[row] = embedding
            found[row] = True
    return EmbeddingTable(
        paths=list(paths),
        embeddings=matrix,
        found=found,
        face_counts=face_counts,
        embedded=len(todo),
        seconds=time.perf_counter() - start,
    )


# threshold metrics


def best_threshold(similarities: np.ndarray, same: np.ndarray, valid: np.ndarray) -> float:
    """Return the similarity threshold (accept when similarity >= threshold) with the highest
    accuracy on these pairs.

    Pairs where `valid` is False (a photo without a detected face) are wrong at any threshold,
    so they lower every candidate's accuracy equally and do not move the choice. Candidates
    are the midpoints between consecutive distinct similarities, plus one threshold above all
    (reject every pair) and one at the lowest (accept every pair). Ties go to the highest
    threshold.
    """
    scores = np.asarray(similarities, np.float64)[valid]
    labels = np.asarray(same, bool)[valid]
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    scores, labels = scores[order], labels[order]

    # Accepting the k highest pairs, k = 0..n: true accepts plus true rejects.
    true_accepts = np.concatenate([[0], np.cumsum(labels)])
    false_accepts = np.concatenate([[0], np.cumsum(~labels)])
    correct = true_accepts + (np.count_nonzero(~labels) - false_accepts)
    # A cut between positions k-1 and k exists only where the similarities differ.
    cut_allowed = np.ones(len(scores) + 1, bool)
    cut_allowed[1:-1] = scores[:-1] > scores[1:]
    k = int(np.argmax(np.where(cut_allowed, correct, -1)))

    if k == 0:
        return float(np.nextafter(scores[0], np.inf))
    if k == len(scores):
        return float(scores[-1])
    return float((scores[k - 1] + scores[k]) / 2)


def accuracy_at(similarities: np.ndarray, same: np.ndarray, valid: np.ndarray, threshold: float) -> float:
    """Fraction of pairs decided correctly at `threshold`; invalid pairs count as wrong."""
    if len(same) == 0:
        return float("nan")
    correct = valid & ((similarities >= threshold) == same)
    return float(np.count_nonzero(correct) / len(same))


def threshold_at_far(impostor_scores: np.ndarray, far: float, total: int | None = None) -> float:
    """Return the lowest threshold at which at most `far` of the impostors are accepted
    (score >= threshold).

    `impostor_scores` are the scores that can be accepted. `total` is the number of impostors
    the rate is over (default: len(impostor_scores)). It is larger when some impostors have no
    score because no face was detected, and those are never accepted. Returns -inf when every
    scored impostor may be accepted.
    """
    scores = np.sort(np.asarray(impostor_scores, np.float64))[::-1]  # descending
    total = len(scores) if total is None else total
    allowed = int(math.floor(far * total + 1e-9))  # accepts permitted; 1e-9 absorbs 0.001 * 3000 = 3.0000000000000004
    if allowed >= len(scores):
        return float("-inf")
    # Just above the (allowed + 1)-th highest score; ties at that score are rejected too.
    return float(np.nextafter(scores[allowed], np.inf))


def tar_at_far(similarities: np.ndarray, same: np.ndarray, valid: np.ndarray, far: float) -> tuple[float, float]:
    """Return (TAR, threshold) at the threshold where `far` of the different-identity pairs
    pass. Invalid pairs (no face) are never accepted but stay in both denominators."""
    impostors = ~same
    threshold = threshold_at_far(similarities[impostors & valid], far, total=int(np.count_nonzero(impostors)))
    genuine = int(np.count_nonzero(same))
    accepted = int(np.count_nonzero(same & valid & (similarities >= threshold)))
    return (accepted / genuine if genuine else float("nan")), threshold


# output


def json_safe(value: Any) -> Any:
    """Convert numpy scalars, and NaN or infinite floats (to None), for json.dumps."""
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def emit(report: dict[str, Any], table: str, as_json: bool) -> None:
    """Print the table on stdout, or with as_json the table on stderr and the report as JSON on stdout."""
    if as_json:
        print(table, file=sys.stderr)
        print(json.dumps(json_safe(report), allow_nan=False))
    else:
        print(table)
