"""Behaviour that every GalleryStore backend must show, run once per backend in STORE_KINDS."""

from __future__ import annotations

import math
import threading
from datetime import UTC
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.gallery import (
    EmbedderMismatchError,
    EmbeddingDimensionError,
    FaceNotFoundError,
    GalleryStore,
    GalleryUnavailableError,
    IdentityNotFoundError,
    InvalidEmbeddingError,
    InvalidFaceError,
    InvalidIdentityError,
    NewFace,
)
from tests.app.gallery.conftest import DIMENSION, FaceMaker, StoreFactory, UnitVectors


def _cosine_partner(anchor: np.ndarray, other: np.ndarray, cosine: float) -> np.ndarray:
    """Return a unit vector whose cosine similarity with the unit vector `anchor` is `cosine`."""
    orthogonal = other - (other @ anchor) * anchor
    orthogonal /= np.linalg.norm(orthogonal)
    vector = cosine * anchor + math.sqrt(1.0 - cosine**2) * orthogonal
    return vector.astype(np.float32)


# enroll


def test_enroll_new_identity_with_two_faces(
    store: GalleryStore, unit_vectors: UnitVectors, make_faces: FaceMaker
) -> None:
    embeddings = unit_vectors(2)
    identity, records = store.enroll(
        make_faces(embeddings), name="Ada Lovelace", metadata={"team": "engines"}
    )

    assert identity.name == "Ada Lovelace"
    assert identity.metadata == {"team": "engines"}
    assert identity.face_count == 2
    assert identity.created_at.tzinfo is not None
    assert identity.created_at.utcoffset() == UTC.utcoffset(None)
    assert [record.identity_id for record in records] == [identity.id, identity.id]
    assert len({record.id for record in records}) == 2
    assert all(record.embedder_id == store.embedder_id for record in records)
    np.testing.assert_allclose(records[0].embedding, embeddings[0], atol=1e-6)
    assert records[0].embedding.dtype == np.float32
    assert records[0].quality == {"blur": 0.1, "index": 0}
    assert store.get_identity(identity.id) == identity
    assert store.count_identities() == 1
    assert store.count_faces() == 2


def test_enroll_stores_faces_that_list_faces_returns(
    store: GalleryStore, unit_vectors: UnitVectors, make_faces: FaceMaker
) -> None:
    faces = make_faces(unit_vectors(3))
    identity, records = store.enroll(faces, name="Grace Hopper")

    listed = store.list_faces(identity.id)

    assert sorted(face.id for face in listed) == sorted(record.id for record in records)
    by_id = {face.id: face for face in listed}
    for record, face in zip(records, faces, strict=True):
        stored = by_id[record.id]
        np.testing.assert_array_equal(stored.embedding, record.embedding)
        assert stored.image_sha256 == face.image_sha256
        assert stored.quality == face.quality
        assert stored.created_at == record.created_at
        assert stored.crop_path is None


def test_enroll_existing_identity_adds_faces(
    store: GalleryStore, unit_vectors: UnitVectors, make_faces: FaceMaker
) -> None:
    identity, _ = store.enroll(make_faces(unit_vectors(2)), name="Alan Turing")

    updated, added = store.enroll(make_faces(unit_vectors(3)), identity_id=identity.id)

    assert updated.id == identity.id
    assert updated.face_count == 5
    assert len(added) == 3
    assert updated.updated_at > identity.updated_at
    assert len(store.list_faces(identity.id)) == 5
    assert store.count_identities() == 1
    assert store.count_faces() == 5


def test_enroll_without_faces_creates_identity(store: GalleryStore) -> None:
    identity, records = store.enroll([], name="No Photo Yet")

    assert records == []
    assert identity.face_count == 0
    assert identity.metadata == {}
    assert store.list_faces(identity.id) == []
    assert store.count_identities() == 1


def test_enroll_unknown_identity_writes_nothing(
    store: GalleryStore, unit_vectors: UnitVectors, make_faces: FaceMaker, crops_dir: Path
) -> None:
    missing = "00000000-0000-4000-8000-000000000000"

    with pytest.raises(IdentityNotFoundError) as caught:
        store.enroll(make_faces(unit_vectors(2), crop=True), identity_id=missing)

    assert caught.value.code == "identity-not-found"
    assert caught.value.value == missing
    assert store.count_faces() == 0
    assert store.count_identities() == 0
    assert not crops_dir.exists() or not any(crops_dir.rglob("*.png"))


def test_enroll_wrong_dimension_in_batch_writes_nothing(
    store: GalleryStore, unit_vectors: UnitVectors, make_faces: FaceMaker
) -> None:
    faces = make_faces(unit_vectors(2)) + make_faces(unit_vectors(1, dimension=DIMENSION + 1))

    with pytest.raises(EmbeddingDimensionError) as caught:
        store.enroll(faces, name="Half Valid")

    assert caught.value.code == "embedding-dimension-mismatch"
    assert store.count_identities() == 0
    assert store.count_faces() == 0
    assert store.list_identities() == ([], 0)


def test_enroll_wrong_dimension_adds_no_face_to_identity(
    store: GalleryStore, unit_vectors: UnitVectors, make_faces: FaceMaker
) -> None:
    identity, _ = store.enroll(make_faces(unit_vectors(1)), name="Existing")
    faces = make_faces(unit_vectors(1)) + make_faces(unit_vectors(1, dimension=DIMENSION - 1))

    with pytest.raises(EmbeddingDimensionError):
        store.enroll(faces, identity_id=identity.id)

    assert store.get_identity(identity.id) == identity
    assert store.count_faces() == 1


@pytest.mark.parametrize(
    ("embedding", "case"),
    [
        (np.full(DIMENSION, np.nan, dtype=np.float32), "nan"),
        (np.zeros(DIMENSION, dtype=np.float32), "zero"),
        (np.full(DIMENSION, 1.0, dtype=np.float32), "not normalised"),
        (np.eye(1, DIMENSION, dtype=np.int64)[0], "integer"),
    ],
)
def test_enroll_invalid_embedding_raises(
    store: GalleryStore, embedding: np.ndarray, case: str
) -> None:
    face = NewFace(embedding=embedding, quality={}, image_sha256="0" * 64)

    with pytest.raises(InvalidEmbeddingError):
        store.enroll([face], name=case)

    assert store.count_identities() == 0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("image_sha256", "ABC"),
        ("image_sha256", "G" * 64),
        ("quality", ["not", "an", "object"]),
        ("crop", np.zeros((16, 12), dtype=np.uint8)),
        ("crop", np.zeros((16, 12, 3), dtype=np.float32)),
        ("crop", np.zeros((0, 12, 3), dtype=np.uint8)),
    ],
)
def test_enroll_invalid_face_raises(
    store: GalleryStore, unit_vectors: UnitVectors, field: str, value: object
) -> None:
    fields: dict[str, object] = {
        "embedding": unit_vectors(1)[0],
        "quality": {},
        "image_sha256": "a" * 64,
        "crop": None,
    }
    fields[field] = value

    with pytest.raises(InvalidFaceError):
        store.enroll([NewFace(**fields)], name="Invalid Face")  # type: ignore[arg-type]

    assert store.count_identities() == 0


def test_enroll_argument_combinations_raise(
    store: GalleryStore, unit_vectors: UnitVectors, make_faces: FaceMaker
) -> None:
    identity, _ = store.enroll(make_faces(unit_vectors(1)), name="Someone")
    faces = make_faces(unit_vectors(1))

    with pytest.raises(ValueError, match="exactly one"):
        store.enroll(faces)
    with pytest.raises(ValueError, match="exactly one"):
        store.enroll(faces, identity_id=identity.id, name="Both")
    with pytest.raises(ValueError, match="metadata"):
        store.enroll(faces, identity_id=identity.id, metadata={"a": 1})
    with pytest.raises(ValueError, match="empty"):
        store.enroll([], identity_id=identity.id)
    assert store.count_faces() == 1


@pytest.mark.parametrize(
    "name",
    ["", "   ", "x" * 201, "line\nbreak", "tab\there", 42],
    ids=["empty", "blank", "too-long", "newline", "tab", "not-str"],
)
def test_enroll_invalid_name_raises(store: GalleryStore, name: object) -> None:
    with pytest.raises(InvalidIdentityError) as caught:
        store.enroll([], name=name)  # type: ignore[arg-type]

    assert caught.value.code == "invalid-identity"
    assert caught.value.hint
    assert store.count_identities() == 0


def test_enroll_name_of_max_length_is_stripped(store: GalleryStore) -> None:
    name = "é" * 200

    identity, _ = store.enroll([], name=f"  {name}\n")

    assert identity.name == name


@pytest.mark.parametrize(
    "metadata",
    [
        ["a", "list"],
        "text",
        {"value": object()},
        {"value": float("nan")},
        {"blob": "x" * (16 * 1024)},
    ],
    ids=["list", "str", "not-serialisable", "nan", "too-big"],
)
def test_enroll_invalid_metadata_raises(store: GalleryStore, metadata: object) -> None:
    with pytest.raises(InvalidIdentityError):
        store.enroll([], name="Metadata Case", metadata=metadata)  # type: ignore[arg-type]

    assert store.count_identities() == 0


def test_enroll_metadata_just_under_limit_is_stored(store: GalleryStore) -> None:
    # {"blob":"..."} adds 11 bytes around the string.
    metadata = {"blob": "x" * (16 * 1024 - 11)}

    identity, _ = store.enroll([], name="Big Metadata", metadata=metadata)

    assert store.get_identity(identity.id).metadata == metadata


def test_enroll_crops_stored_as_png(
    store: GalleryStore,
    unit_vectors: UnitVectors,
    make_faces: FaceMaker,
    crops_dir: Path,
) -> None:
    faces = make_faces(unit_vectors(2), crop=True)

    identity, records = store.enroll(faces, name="With Crops")

    for record, face in zip(records, faces, strict=True):
        assert record.crop_path is not None
        path = Path(record.crop_path)
        assert path == crops_dir.resolve() / identity.id / f"{record.id}.png"
        with Image.open(path) as image:
            assert image.format == "PNG"
            np.testing.assert_array_equal(np.asarray(image.convert("RGB")), face.crop)


def test_enroll_without_crops_dir_writes_no_image(
    store_factory: StoreFactory, unit_vectors: UnitVectors, make_faces: FaceMaker, tmp_path: Path
) -> None:
    store = store_factory(crops_dir=None)

    _, records = store.enroll(make_faces(unit_vectors(2), crop=True), name="No Crops")

    assert [record.crop_path for record in records] == [None, None]
    assert list(tmp_path.rglob("*.png")) == []


# search


def test_search_own_embedding_ranks_identity_first(
    store: GalleryStore, unit_vectors: UnitVectors, make_faces: FaceMaker
) -> None:
    embeddings = unit_vectors(10)
    identities = [
        store.enroll(make_faces(embeddings[2 * i : 2 * i + 2]), name=f"Person {i}")
        for i in range(5)
    ]

    results = store.search(embeddings[[4, 7]], top_k=3)

    assert len(results) == 2
    first, second = results
    assert first[0].identity_id == identities[2][0].id
    assert first[0].name == "Person 2"
    assert first[0].face_id == identities[2][1][0].id
    assert first[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert second[0].identity_id == identities[3][0].id
    assert second[0].face_id == identities[3][1][1].id
    # Random 128-D unit vectors are nearly orthogonal, so the runner-up is far below 1.
    assert first[1].similarity < 0.5


def test_search_results_are_sorted_best_first(
    store: GalleryStore, unit_vectors: UnitVectors, make_faces: FaceMaker
) -> None:
    for i in range(20):
        store.enroll(make_faces(unit_vectors(3)), name=f"Person {i}")

    (matches,) = store.search(unit_vectors(1), top_k=20)

    similarities = [match.similarity for match in matches]
    assert len(matches) == 20
    assert similarities == sorted(similarities, reverse=True)
    assert all(-1.0 <= value <= 1.0 for value in similarities)


def test_search_top_k_returns_distinct_identities(
    store: GalleryStore, unit_vectors: UnitVectors, make_faces: FaceMaker
) -> None:
    query, other_a, other_b, other_c = unit_vectors(4)
    # Ten faces of one identity all lie closer to the query than any other identity's face.
    near = np.stack(
        [_cosine_partner(query, other, 0.9 - 0.01 * i) for i, other in enumerate(unit_vectors(10))]
    )
    crowded, _ = store.enroll(make_faces(near), name="Crowded")
    second, _ = store.enroll(make_faces(_cosine_partner(query, other_a, 0.5)[None]), name="B")
    third, _ = store.enroll(make_faces(_cosine_partner(query, other_b, 0.4)[None]), name="C")
    store.enroll(make_faces(_cosine_partner(query, other_c, 0.3)[None]), name="D")

    (top_two,) = store.search(query[None], top_k=2)
    (top_three,) = store.search(query[None], top_k=3)
    (all_matches,) = store.search(query[None], top_k=100)

    assert [match.identity_id for match in top_two] == [crowded.id, second.id]
    assert [match.identity_id for match in top_three] == [crowded.id, second.id, third.id]
    assert len(all_matches) == 4
    assert len({match.identity_id for match in all_matches}) == 4


def test_search_similarity_is_max_over_faces(
    store: GalleryStore, unit_vectors: UnitVectors, make_faces: FaceMaker
) -> None:
    query, *others = unit_vectors(4)
    faces = np.stack(
        [_cosine_partner(query, other, cosine) for other, cosine in zip(others, [0.2, 0.7, 0.4])]
    )
    identity, records = store.enroll(make_faces(faces), name="Three Faces")

    (matches,) = store.search(query[None], top_k=5)

    assert len(matches) == 1
    assert matches[0].identity_id == identity.id
    assert matches[0].face_id == records[1].id
    assert matches[0].similarity == pytest.approx(0.7, abs=1e-5)


def test_search_queries_need_not_be_normalised(
    store: GalleryStore, unit_vectors: UnitVectors, make_faces: FaceMaker
) -> None:
    embeddings = unit_vectors(2)
    identity, _ = store.enroll(make_faces(embeddings), name="Scaled")

    (matches,) = store.search(3.0 * embeddings[:1], top_k=1)

    assert matches[0].identity_id == identity.id
    assert matches[0].similarity == pytest.approx(1.0, abs=1e-5)


def test_search_empty_gallery_returns_empty_lists(
    store: GalleryStore, unit_vectors: UnitVectors
) -> None:
    assert store.search(unit_vectors(3), top_k=5) == [[], [], []]


def test_search_no_queries_returns_empty_list(
    store: GalleryStore, unit_vectors: UnitVectors, make_faces: FaceMaker
) -> None:
    store.enroll(make_faces(unit_vectors(1)), name="Someone")

    assert store.search(np.empty((0, DIMENSION), dtype=np.float32), top_k=5) == []


def test_search_invalid_queries_raise(store: GalleryStore, unit_vectors: UnitVectors) -> None:
    with pytest.raises(EmbeddingDimensionError):
        store.search(unit_vectors(2, dimension=DIMENSION + 1), top_k=1)
    with pytest.raises(EmbeddingDimensionError):
        store.search(unit_vectors(1)[0], top_k=1)
    with pytest.raises(InvalidEmbeddingError):
        store.search(np.zeros((1, DIMENSION), dtype=np.float32), top_k=1)
    with pytest.raises(InvalidEmbeddingError):
        store.search(np.full((1, DIMENSION), np.inf, dtype=np.float32), top_k=1)
    with pytest.raises(ValueError, match="top_k"):
        store.search(unit_vectors(1), top_k=0)


# list, get, update


def test_list_identities_pages_in_creation_order(store: GalleryStore) -> None:
    created = [store.enroll([], name=f"Person {i:02d}")[0] for i in range(7)]

    first_page, first_total = store.list_identities(offset=0, limit=3)
    last_page, last_total = store.list_identities(offset=6, limit=3)
    past_end, past_total = store.list_identities(offset=10, limit=3)
    everyone, _ = store.list_identities(limit=50)

    assert first_total == 7
    assert [identity.id for identity in first_page] == [identity.id for identity in created[:3]]
    assert last_total == 7
    assert [identity.id for identity in last_page] == [created[6].id]
    assert past_end == []
    assert past_total == 7
    assert everyone == created
    assert everyone == sorted(everyone, key=lambda identity: (identity.created_at, identity.id))


def test_list_identities_name_filter_ignores_case(store: GalleryStore) -> None:
    store.enroll([], name="Marie Curie")
    pierre, _ = store.enroll([], name="Pierre CURIE")
    irene, _ = store.enroll([], name="Irène Joliot-Curie")
    store.enroll([], name="Lise Meitner")
    store.enroll([], name="100% sure_name")

    matches, total = store.list_identities(name="cUrIe")
    paged, paged_total = store.list_identities(name="curie", offset=1, limit=1)
    literal, _ = store.list_identities(name="%")
    underscore, _ = store.list_identities(name="e_n")
    nobody, nobody_total = store.list_identities(name="Einstein")

    assert total == 3
    assert [identity.name for identity in matches] == [
        "Marie Curie",
        "Pierre CURIE",
        "Irène Joliot-Curie",
    ]
    assert paged_total == 3
    assert [identity.id for identity in paged] == [pierre.id]
    # % and _ are plain characters here, not wildcards.
    assert [identity.name for identity in literal] == ["100% sure_name"]
    assert [identity.name for identity in underscore] == ["100% sure_name"]
    assert (nobody, nobody_total) == ([], 0)
    assert irene.id in {identity.id for identity in matches}


def test_list_identities_reports_face_counts(
    store: GalleryStore, unit_vectors: UnitVectors, make_faces: FaceMaker
) -> None:
    store.enroll(make_faces(unit_vectors(3)), name="Three")
    store.enroll([], name="None")

    identities, _ = store.list_identities()

    assert [identity.face_count for identity in identities] == [3, 0]


def test_list_identities_negative_offset_raises(store: GalleryStore) -> None:
    with pytest.raises(ValueError, match="offset"):
        store.list_identities(offset=-1)


def test_update_identity_name_and_metadata(
    store: GalleryStore, unit_vectors: UnitVectors, make_faces: FaceMaker
) -> None:
    embeddings = unit_vectors(1)
    identity, _ = store.enroll(make_faces(embeddings), name="Old Name", metadata={"a": 1})

    renamed = store.update_identity(identity.id, name="New Name")
    with_metadata = store.update_identity(identity.id, metadata={"b": [1, 2]})

    assert renamed.name == "New Name"
    assert renamed.metadata == {"a": 1}
    assert renamed.updated_at > identity.updated_at
    assert renamed.created_at == identity.created_at
    assert with_metadata.name == "New Name"
    assert with_metadata.metadata == {"b": [1, 2]}
    assert with_metadata.updated_at > renamed.updated_at
    assert with_metadata.face_count == 1
    assert store.get_identity(identity.id) == with_metadata
    assert store.search(embeddings, top_k=1)[0][0].name == "New Name"


def test_update_identity_without_changes_returns_it(store: GalleryStore) -> None:
    identity, _ = store.enroll([], name="Unchanged")

    assert store.update_identity(identity.id) == identity


def test_update_identity_invalid_values_raise(store: GalleryStore) -> None:
    identity, _ = store.enroll([], name="Valid", metadata={"k": "v"})

    with pytest.raises(InvalidIdentityError):
        store.update_identity(identity.id, name=" ")
    with pytest.raises(InvalidIdentityError):
        store.update_identity(identity.id, metadata=[1, 2])  # type: ignore[arg-type]

    assert store.get_identity(identity.id) == identity


def test_unknown_identity_raises_not_found(store: GalleryStore) -> None:
    missing = "00000000-0000-4000-8000-000000000001"

    with pytest.raises(IdentityNotFoundError):
        store.get_identity(missing)
    with pytest.raises(IdentityNotFoundError):
        store.update_identity(missing, name="Nobody")
    with pytest.raises(IdentityNotFoundError):
        store.delete_identity(missing)
    with pytest.raises(IdentityNotFoundError):
        store.list_faces(missing)
    with pytest.raises(IdentityNotFoundError):
        store.delete_face(missing, "00000000-0000-4000-8000-000000000002")


# delete


def test_delete_identity_removes_faces_and_crops(
    store_factory: StoreFactory,
    unit_vectors: UnitVectors,
    make_faces: FaceMaker,
    crops_dir: Path,
) -> None:
    store = store_factory(crops_dir=crops_dir)
    embeddings = unit_vectors(3)
    removed, removed_faces = store.enroll(make_faces(embeddings[:2], crop=True), name="Removed")
    kept, _ = store.enroll(make_faces(embeddings[2:], crop=True), name="Kept")

    count = store.delete_identity(removed.id)

    assert count == 2
    assert [match.identity_id for match in store.search(embeddings[:1], top_k=5)[0]] == [kept.id]
    assert store.count_identities() == 1
    assert store.count_faces() == 1
    for record in removed_faces:
        assert record.crop_path is not None
        assert not Path(record.crop_path).exists()
    assert not (crops_dir / removed.id).exists()
    assert (crops_dir / kept.id).is_dir()
    with pytest.raises(IdentityNotFoundError):
        store.get_identity(removed.id)

    store.close()
    reopened = store_factory(crops_dir=crops_dir)
    assert reopened.count_identities() == 1
    assert reopened.count_faces() == 1
    assert [match.identity_id for match in reopened.search(embeddings[:1], top_k=5)[0]] == [
        kept.id
    ]
    with pytest.raises(IdentityNotFoundError):
        reopened.list_faces(removed.id)


def test_delete_face_removes_one_face(
    store: GalleryStore, unit_vectors: UnitVectors, make_faces: FaceMaker
) -> None:
    embeddings = unit_vectors(2)
    identity, records = store.enroll(make_faces(embeddings, crop=True), name="Two Faces")

    store.delete_face(identity.id, records[0].id)

    (matches,) = store.search(embeddings[:1], top_k=5)
    assert [match.face_id for match in matches] == [records[1].id]
    assert matches[0].similarity < 0.5
    assert [face.id for face in store.list_faces(identity.id)] == [records[1].id]
    assert store.get_identity(identity.id).face_count == 1
    assert store.get_identity(identity.id).updated_at > identity.updated_at
    assert store.count_faces() == 1
    assert records[0].crop_path is not None
    assert not Path(records[0].crop_path).exists()
    assert records[1].crop_path is not None
    assert Path(records[1].crop_path).exists()


def test_delete_last_face_keeps_identity(
    store: GalleryStore, unit_vectors: UnitVectors, make_faces: FaceMaker, crops_dir: Path
) -> None:
    embeddings = unit_vectors(1)
    identity, records = store.enroll(make_faces(embeddings, crop=True), name="One Face")

    store.delete_face(identity.id, records[0].id)

    assert store.get_identity(identity.id).face_count == 0
    assert store.search(embeddings, top_k=5) == [[]]
    assert not (crops_dir / identity.id).exists()


def test_delete_face_of_other_identity_raises(
    store: GalleryStore, unit_vectors: UnitVectors, make_faces: FaceMaker
) -> None:
    first, first_faces = store.enroll(make_faces(unit_vectors(1)), name="First")
    second, _ = store.enroll(make_faces(unit_vectors(1)), name="Second")

    with pytest.raises(FaceNotFoundError) as caught:
        store.delete_face(second.id, first_faces[0].id)

    assert caught.value.code == "face-not-found"
    assert caught.value.value == first_faces[0].id
    assert store.count_faces() == 2
    assert store.get_identity(first.id).face_count == 1


# reopening


def test_reopen_gives_same_search_results(
    store_factory: StoreFactory, unit_vectors: UnitVectors, make_faces: FaceMaker
) -> None:
    store = store_factory()
    for i in range(6):
        store.enroll(make_faces(unit_vectors(3)), name=f"Person {i}", metadata={"i": i})
    queries = unit_vectors(4)
    before = store.search(queries, top_k=4)
    identities_before = store.list_identities()
    store.close()

    reopened = store_factory()

    after = reopened.search(queries, top_k=4)
    assert [[(m.identity_id, m.face_id, m.name) for m in row] for row in after] == [
        [(m.identity_id, m.face_id, m.name) for m in row] for row in before
    ]
    for row_after, row_before in zip(after, before, strict=True):
        for match_after, match_before in zip(row_after, row_before, strict=True):
            assert match_after.similarity == pytest.approx(match_before.similarity, abs=1e-6)
    assert reopened.list_identities() == identities_before
    assert reopened.count_faces() == 18


def test_reopen_with_other_embedder_raises(
    store_factory: StoreFactory, unit_vectors: UnitVectors, make_faces: FaceMaker
) -> None:
    store = store_factory()
    store.enroll(make_faces(unit_vectors(2)), name="Someone")
    store.close()

    with pytest.raises(EmbedderMismatchError) as caught:
        store_factory(embedder_id="another-embedder")

    assert caught.value.code == "embedder-mismatch"
    assert caught.value.hint is not None
    assert "FACEGATE_EMBEDDER" in caught.value.hint
    assert store_factory().count_faces() == 2


def test_reopen_with_other_dimension_raises(
    store_factory: StoreFactory, unit_vectors: UnitVectors, make_faces: FaceMaker
) -> None:
    store = store_factory()
    store.enroll(make_faces(unit_vectors(2)), name="Someone")
    store.close()

    with pytest.raises(EmbedderMismatchError):
        store_factory(dimension=DIMENSION * 4)

    assert store_factory().count_faces() == 2


# lifecycle and concurrency


def test_closed_store_raises_unavailable(
    store_factory: StoreFactory, unit_vectors: UnitVectors
) -> None:
    store = store_factory()
    store.ping()
    store.close()
    store.close()

    with pytest.raises(GalleryUnavailableError):
        store.ping()
    with pytest.raises(GalleryUnavailableError):
        store.enroll([], name="Too Late")
    with pytest.raises(GalleryUnavailableError):
        store.search(unit_vectors(1), top_k=1)


def test_concurrent_enroll_and_search_stay_consistent(
    store: GalleryStore, unit_vectors: UnitVectors, make_faces: FaceMaker
) -> None:
    writers, readers, identities_per_writer, faces_per_identity = 4, 4, 15, 2
    batches = [
        [make_faces(unit_vectors(faces_per_identity)) for _ in range(identities_per_writer)]
        for _ in range(writers)
    ]
    queries = unit_vectors(4)
    errors: list[BaseException] = []
    done = threading.Event()
    start = threading.Barrier(writers + readers)

    def enroll_batches(faces_per_call: list[list[NewFace]], writer: int) -> None:
        try:
            start.wait()
            for index, faces in enumerate(faces_per_call):
                identity, _ = store.enroll(faces, name=f"Writer {writer} person {index}")
                # Each enrolled face must be searchable once enroll returns.
                (matches,) = store.search(faces[0].embedding[None], top_k=1)
                assert matches[0].identity_id == identity.id
        except BaseException as exc:  # collected and re-raised in the main thread below
            errors.append(exc)

    def search_until_done() -> None:
        try:
            start.wait()
            while not done.is_set():
                results = store.search(queries, top_k=5)
                for matches in results:
                    assert len({match.identity_id for match in matches}) == len(matches)
                store.list_identities(limit=10)
                store.count_faces()
        except BaseException as exc:  # collected and re-raised in the main thread below
            errors.append(exc)

    threads = [
        threading.Thread(target=enroll_batches, args=(batches[writer], writer))
        for writer in range(writers)
    ] + [threading.Thread(target=search_until_done) for _ in range(readers)]
    for thread in threads:
        thread.start()
    for thread in threads[:writers]:
        thread.join(timeout=60)
    done.set()
    for thread in threads[writers:]:
        thread.join(timeout=60)

    assert errors == []
    assert not any(thread.is_alive() for thread in threads)
    assert store.count_identities() == writers * identities_per_writer
    assert store.count_faces() == writers * identities_per_writer * faces_per_identity
    _, total = store.list_identities()
    assert total == writers * identities_per_writer
    (matches,) = store.search(queries[:1], top_k=1000)
    assert len(matches) == writers * identities_per_writer
