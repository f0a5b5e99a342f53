"""The LFW benchmark protocol on synthetic similarities and the real pair lists; no model runs."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from bench.common import (
    EmbeddingCache,
    PairListError,
    accuracy_at,
    best_threshold,
    cache_key,
    central_face,
    image_path,
    list_identities,
    parse_pairs,
    tar_at_far,
    threshold_at_far,
)
from bench.identify import best_matches, choose_people
from bench.lfw import all_pair_similarities, kfold_accuracy, limit_pairs
from models.alignment import DLIB_CHIP_150
from models.detector import Detection, DetectorConfig


def all_valid(count: int) -> np.ndarray:
    return np.ones(count, bool)


# threshold selection


def test_best_threshold_separates_classes() -> None:
    similarities = np.array([0.9, 0.8, 0.3, 0.2])
    same = np.array([True, True, False, False])
    threshold = best_threshold(similarities, same, all_valid(4))
    assert threshold == pytest.approx(0.55)
    assert accuracy_at(similarities, same, all_valid(4), threshold) == 1.0


def test_best_threshold_matches_brute_force() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        same = rng.random(200) < 0.5
        # Rounded so that ties occur.
        similarities = np.round(np.where(same, rng.normal(0.7, 0.15, 200), rng.normal(0.4, 0.15, 200)), 2)
        valid = rng.random(200) > 0.05
        candidates = np.concatenate([np.unique(similarities[valid]), [np.inf]])
        best = max(accuracy_at(similarities, same, valid, t) for t in candidates)
        threshold = best_threshold(similarities, same, valid)
        assert accuracy_at(similarities, same, valid, threshold) == pytest.approx(best)


def test_best_threshold_ignores_failed_pairs() -> None:
    similarities = np.array([0.9, 0.8, 0.3, 0.2, np.nan])
    same = np.array([True, True, False, False, False])
    valid = np.array([True, True, True, True, False])
    assert best_threshold(similarities, same, valid) == pytest.approx(0.55)


def test_best_threshold_rejects_all_when_best() -> None:
    similarities = np.array([0.9, 0.8])
    same = np.array([False, False])
    threshold = best_threshold(similarities, same, all_valid(2))
    assert threshold > 0.9
    assert accuracy_at(similarities, same, all_valid(2), threshold) == 1.0


# 10-fold accuracy


def test_kfold_accuracy_thresholds_from_other_folds() -> None:
    # Fold 0 separates at 0.5, fold 1 at 0.8: each fold is scored with the other's threshold.
    similarities = np.array([0.6, 0.4, 0.9, 0.7])
    same = np.array([True, False, True, False])
    folds = np.array([0, 0, 1, 1])
    result = kfold_accuracy(similarities, same, all_valid(4), folds)
    assert result.thresholds.tolist() == pytest.approx([0.8, 0.5])
    assert result.accuracies.tolist() == [0.5, 0.5]


def test_kfold_accuracy_failures_count_as_wrong() -> None:
    folds = np.repeat(np.arange(10), 4)  # 10 folds of 2 same and 2 different pairs
    same = np.tile([True, True, False, False], 10)
    similarities = np.where(same, 0.9, 0.1)
    valid = all_valid(40)
    valid[0] = False  # a same pair of fold 0 whose photo has no face, with a similarity that would pass
    result = kfold_accuracy(similarities, same, valid, folds)
    assert result.accuracies[0] == 0.75
    assert result.accuracies[1:].tolist() == [1.0] * 9
    assert result.accuracies_excluding_failures.tolist() == [1.0] * 10


def test_accuracy_at_failure_is_wrong() -> None:
    # A different pair without a face would be a correct reject, but failures are wrong.
    similarities = np.array([0.9, np.nan])
    same = np.array([True, False])
    assert accuracy_at(similarities, same, np.array([True, False]), 0.5) == 0.5


# TAR at FAR


def test_threshold_at_far_allows_floor_of_rate() -> None:
    impostors = np.arange(3000) / 3000  # distinct scores 0 .. 0.99967
    threshold = threshold_at_far(impostors, 1e-3)
    assert np.count_nonzero(impostors >= threshold) == 3


def test_threshold_at_far_ties_are_rejected() -> None:
    impostors = np.array([0.9, 0.9, 0.1, 0.1])
    threshold = threshold_at_far(impostors, 0.25)  # one accept allowed, but the top two tie
    assert np.count_nonzero(impostors >= threshold) == 0


def test_threshold_at_far_counts_unscored_impostors() -> None:
    # 2,000 impostors without a face stay in the denominator: 3 of 3,000 may pass.
    impostors = np.arange(1000) / 1000
    threshold = threshold_at_far(impostors, 1e-3, total=3000)
    assert np.count_nonzero(impostors >= threshold) == 3


def test_tar_at_far_pools_pairs() -> None:
    impostors = np.arange(1000) / 2000  # highest 0.4995, second 0.499
    genuine = np.array([0.9, 0.6, 0.4989, 0.3])
    similarities = np.concatenate([genuine, impostors])
    same = np.concatenate([np.ones(4, bool), np.zeros(1000, bool)])
    tar, threshold = tar_at_far(similarities, same, all_valid(1004), 1e-3)
    assert 0.499 < threshold <= 0.4995
    assert tar == 0.5


def test_tar_at_far_rejects_failed_genuine() -> None:
    similarities = np.array([0.9, np.nan, 0.1, 0.2])
    same = np.array([True, True, False, False])
    valid = np.array([True, False, True, True])
    tar, _ = tar_at_far(similarities, same, valid, 1e-3)
    assert tar == 0.5


def test_all_pair_similarities_splits_by_owner() -> None:
    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(1100, 8)).astype(np.float32)  # more rows than one block
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    owners = np.repeat(np.arange(110), 10)  # 110 people with 10 rows each
    impostor, genuine = all_pair_similarities(embeddings, owners)
    assert len(genuine) == 110 * 45
    assert len(impostor) == 1100 * 1099 // 2 - 110 * 45
    upper = np.triu_indices(10, k=1)
    expected = [(embeddings[owners == person] @ embeddings[owners == person].T)[upper] for person in range(110)]
    assert np.sort(genuine) == pytest.approx(np.sort(np.concatenate(expected)), abs=1e-6)


# pair lists


def test_parse_pairs_view2(faces_dir: Path) -> None:
    pairs = parse_pairs(faces_dir / "lfw" / "pairs.txt")
    assert len(pairs) == 6000
    assert sorted({pair.fold for pair in pairs}) == list(range(10))
    assert sum(pair.same for pair in pairs) == 3000
    for fold in range(10):
        fold_pairs = [pair for pair in pairs if pair.fold == fold]
        assert [pair.same for pair in fold_pairs] == [True] * 300 + [False] * 300
    assert all(pair.left_name == pair.right_name for pair in pairs if pair.same)
    assert all(pair.left_name != pair.right_name for pair in pairs if not pair.same)
    assert (faces_dir / "lfw" / "lfw-deepfunneled" / pairs[0].left_path).is_file()


def test_parse_pairs_dev_train(faces_dir: Path) -> None:
    pairs = parse_pairs(faces_dir / "lfw" / "pairsDevTrain.txt")
    assert len(pairs) == 2200
    assert {pair.fold for pair in pairs} == {0}
    assert [pair.same for pair in pairs] == [True] * 1100 + [False] * 1100


def test_parse_pairs_rejects_short_file(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text("2\nA 1 2\nB 1 C 2\n")
    with pytest.raises(PairListError, match="announces 4"):
        parse_pairs(path)


def test_parse_pairs_rejects_misplaced_line(tmp_path: Path) -> None:
    path = tmp_path / "pairs.txt"
    path.write_text("1\nA 1 B 2\nA 1 2\n")  # different line where a same line belongs
    with pytest.raises(PairListError, match="Line 2"):
        parse_pairs(path)


def test_image_path_pads_index() -> None:
    assert image_path("Aaron_Peirsol", 3) == "Aaron_Peirsol/Aaron_Peirsol_0003.jpg"


def test_limit_pairs_keeps_folds_and_classes(faces_dir: Path) -> None:
    pairs = limit_pairs(parse_pairs(faces_dir / "lfw" / "pairs.txt"), 60)
    assert len(pairs) == 60
    for fold in range(10):
        assert [pair.same for pair in pairs if pair.fold == fold] == [True] * 3 + [False] * 3


# embedding cache and face choice


def test_cache_key_changes_with_template() -> None:
    moved = dataclasses.replace(DLIB_CHIP_150, points=DLIB_CHIP_150.points + 0.5)
    reweighted = dataclasses.replace(DLIB_CHIP_150, weights=np.ones(5, np.float32))
    base = cache_key("dlib-resnet", DLIB_CHIP_150, DetectorConfig())
    assert cache_key("dlib-resnet", DLIB_CHIP_150, DetectorConfig()) == base
    assert cache_key("dlib-resnet", moved, DetectorConfig()) != base
    assert cache_key("dlib-resnet", reweighted, DetectorConfig()) != base
    assert cache_key("dlib-resnet", DLIB_CHIP_150, DetectorConfig(min_face_size_px=40)) != base
    assert cache_key("facenet-vggface2", DLIB_CHIP_150, DetectorConfig()) != base


def test_cache_key_changes_with_source(tmp_path: Path) -> None:
    source = tmp_path / "alignment.py"
    source.write_text("A = 1\n")
    before = cache_key("dlib-resnet", DLIB_CHIP_150, DetectorConfig(), sources=[source])
    source.write_text("A = 2\n")
    assert cache_key("dlib-resnet", DLIB_CHIP_150, DetectorConfig(), sources=[source]) != before


def test_embedding_cache_round_trip(tmp_path: Path) -> None:
    cache = EmbeddingCache(tmp_path / "cache.npz", dimension=4)
    cache.put("A/A_0001.jpg", np.array([1, 0, 0, 0], np.float32), 2)
    cache.put("B/B_0001.jpg", None, 0)
    cache.save()
    reloaded = EmbeddingCache(tmp_path / "cache.npz", dimension=4)
    assert reloaded.embeddings["A/A_0001.jpg"].tolist() == [1, 0, 0, 0]
    assert reloaded.embeddings["B/B_0001.jpg"] is None
    assert reloaded.face_counts == {"A/A_0001.jpg": 2, "B/B_0001.jpg": 0}


def test_central_face_picks_middle_face() -> None:
    landmarks = np.zeros((5, 2), np.float32)
    large_corner = Detection(bbox=(0.0, 0.0, 120.0, 120.0), score=0.99, landmarks=landmarks)
    small_middle = Detection(bbox=(100.0, 100.0, 150.0, 150.0), score=0.95, landmarks=landmarks)
    assert central_face([large_corner, small_middle], 250, 250) == 1


# identification


def test_best_matches_uses_best_enrolled_face() -> None:
    gallery = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], np.float32)
    owners = np.array([0, 1, 1])
    probes = np.array([[0.8, 0.6], [0.0, -1.0]], np.float32)
    best, score = best_matches(probes, gallery, owners, people=3)  # person 2 has no enrolled face
    assert best.tolist() == [1, 0]
    assert score.tolist() == pytest.approx([0.96, 0.0])


def test_choose_people_counts(faces_dir: Path) -> None:
    identities = list_identities(faces_dir / "lfw" / "lfw-deepfunneled")
    enrolled, unknown = choose_people(identities)
    assert len(enrolled) == 158
    assert len(unknown) == 1000
    assert all(len(identities[name]) < 10 for name in unknown)
    assert choose_people(identities) == (enrolled, unknown)
