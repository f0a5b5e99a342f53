"""POST /enroll, /identify, /verify, /embed and /detect on real LFW photos."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.app.support import (
    ENROLLED_PHOTOS,
    MULTIFACE_PHOTO,
    NO_FACE_PHOTO,
    PROBE_PHOTOS,
    UNKNOWN_PERSON,
    AppStarter,
    Gallery,
    assert_problem,
    display_name,
    enroll,
    identify,
    lfw_bytes,
    multipart_images,
    unit_norm,
)

LANDMARK_NAMES = {"left_eye", "right_eye", "nose", "mouth_left", "mouth_right"}
QUALITY_FIELDS = {"face_size_px", "detection_score", "sharpness", "yaw_deg", "roll_deg", "reasons"}
# Similarities are rounded to 4 decimals in responses.
ROUNDING = 1e-4


# /identify


@pytest.mark.parametrize("person", sorted(PROBE_PHOTOS))
def test_identify_enrolled_person_named(gallery: Gallery, photo_dir: Path, person: str) -> None:
    body = identify(gallery.client, lfw_bytes(photo_dir, person, PROBE_PHOTOS[person]))

    assert len(body["faces"]) == 1
    face = body["faces"][0]
    assert face["identity"] is not None, f"{person} not recognised: {face['matches']}"
    assert face["identity"]["id"] == gallery.identity_ids[person]
    assert face["identity"]["name"] == display_name(person)
    assert face["identity"]["similarity"] >= body["threshold"]
    assert face["matches"][0]["identity_id"] == gallery.identity_ids[person]


def test_identify_unknown_person_null(gallery: Gallery, photo_dir: Path) -> None:
    body = identify(gallery.client, lfw_bytes(photo_dir, *UNKNOWN_PERSON))

    face = body["faces"][0]
    assert face["identity"] is None
    assert face["matches"], "matches list the nearest identities even for an unknown face"
    assert face["matches"][0]["similarity"] < body["threshold"]


def test_identify_response_shape(gallery: Gallery, photo_dir: Path) -> None:
    person = "Colin_Powell"
    body = identify(gallery.client, lfw_bytes(photo_dir, person, PROBE_PHOTOS[person]))

    assert body["threshold"] == gallery.client.app.state.runtime.service.default_threshold
    assert body["image"] == {"width": 250, "height": 250}
    assert body["model"]["embedder"] == gallery.client.app.state.runtime.service.pipeline.embedder_id
    assert {"detect", "align", "embed", "search", "total"} <= set(body["timings_ms"])
    face = body["faces"][0]
    box = face["box"]
    assert set(box) == {"x1", "y1", "x2", "y2"}
    assert 0 <= box["x1"] < box["x2"] <= 250
    assert 0 <= box["y1"] < box["y2"] <= 250
    assert set(face["landmarks"]) == LANDMARK_NAMES
    for point in face["landmarks"].values():
        assert len(point) == 2
        assert box["x1"] <= point[0] <= box["x2"]
        assert box["y1"] <= point[1] <= box["y2"]
    assert 0.9 <= face["detection_score"] <= 1.0
    assert set(face["quality"]) == QUALITY_FIELDS
    assert face["quality"]["reasons"] == []
    assert len(face["matches"]) == len(ENROLLED_PHOTOS)  # default top_k 5
    for match in face["matches"]:
        assert set(match) == {"identity_id", "name", "similarity", "face_id"}
        assert -1.0 <= match["similarity"] <= 1.0
    similarities = [match["similarity"] for match in face["matches"]]
    assert similarities == sorted(similarities, reverse=True)
    assert len({match["identity_id"] for match in face["matches"]}) == len(face["matches"])
    assert set(face["identity"]) == {"id", "name", "similarity"}
    assert face["identity"]["similarity"] == face["matches"][0]["similarity"]


def test_identify_top_k_limits_matches(gallery: Gallery, photo_dir: Path) -> None:
    image = lfw_bytes(photo_dir, "George_W_Bush", PROBE_PHOTOS["George_W_Bush"])

    assert len(identify(gallery.client, image, top_k="1")["faces"][0]["matches"]) == 1
    assert len(identify(gallery.client, image, top_k="3")["faces"][0]["matches"]) == 3
    # More than the gallery holds: every identity once.
    assert len(identify(gallery.client, image, top_k="100")["faces"][0]["matches"]) == len(ENROLLED_PHOTOS)


def test_identify_top_k_query_parameter(gallery: Gallery, photo_dir: Path) -> None:
    image = lfw_bytes(photo_dir, "George_W_Bush", PROBE_PHOTOS["George_W_Bush"])

    response = gallery.client.post("/identify?top_k=2", files=multipart_images("image", image))

    assert response.status_code == 200
    assert len(response.json()["faces"][0]["matches"]) == 2


def test_identify_threshold_option(gallery: Gallery, photo_dir: Path) -> None:
    image = lfw_bytes(photo_dir, "Jean_Chretien", PROBE_PHOTOS["Jean_Chretien"])

    strict = identify(gallery.client, image, threshold="1.0")
    lenient = identify(gallery.client, image, threshold="-1")

    assert strict["threshold"] == 1.0
    assert strict["faces"][0]["identity"] is None
    assert lenient["threshold"] == -1.0
    assert lenient["faces"][0]["identity"]["id"] == gallery.identity_ids["Jean_Chretien"]


def test_identify_json_base64_variants_match_multipart(gallery: Gallery, photo_dir: Path) -> None:
    image = lfw_bytes(photo_dir, "John_Ashcroft", PROBE_PHOTOS["John_Ashcroft"])
    reference = identify(gallery.client, image)["faces"][0]["identity"]
    standard = base64.b64encode(image).decode()
    url_safe = base64.urlsafe_b64encode(image).decode().rstrip("=")
    variants = {
        "standard": standard,
        "data-uri": "data:image/jpeg;base64," + standard,
        "url-safe without padding": url_safe,
        "line-wrapped": "\n".join(standard[i : i + 76] for i in range(0, len(standard), 76)),
    }

    for label, text in variants.items():
        response = gallery.client.post("/identify", json={"image": text, "top_k": 2})
        assert response.status_code == 200, f"{label}: {response.text}"
        body = response.json()
        assert body["faces"][0]["identity"] == reference, label
        assert len(body["faces"][0]["matches"]) == 2, label


def test_identify_no_face_photo_empty(gallery: Gallery, faces_dir: Path) -> None:
    body = identify(gallery.client, (faces_dir / NO_FACE_PHOTO).read_bytes())

    assert body["faces"] == []
    assert isinstance(body["threshold"], float)


def test_identify_multiface_photo_max_faces(gallery: Gallery, faces_dir: Path) -> None:
    image = (faces_dir / MULTIFACE_PHOTO).read_bytes()

    every_face = identify(gallery.client, image)["faces"]
    two_faces = identify(gallery.client, image, max_faces="2")["faces"]

    assert len(every_face) == 6
    assert len(two_faces) == 2
    assert [face["box"] for face in two_faces] == [face["box"] for face in every_face[:2]]
    for face in every_face:
        assert face["identity"] is None  # none of the six is enrolled


# /enroll


def test_enroll_adds_photos_to_identity(start_app: AppStarter, photo_dir: Path) -> None:
    client = start_app()
    created = enroll(client, "Colin Powell", lfw_bytes(photo_dir, "Colin_Powell", 1))
    identity_id = created["identity"]["id"]

    response = client.post(
        "/enroll",
        files=multipart_images(
            "images", lfw_bytes(photo_dir, "Colin_Powell", 2), lfw_bytes(photo_dir, "Colin_Powell", 5)
        ),
        data={"identity_id": identity_id},
    )

    assert response.status_code == 200
    body = response.json()
    assert body["created"] is False
    assert body["identity"]["id"] == identity_id
    assert body["identity"]["face_count"] == 3
    assert [face["image_index"] for face in body["faces_added"]] == [0, 1]
    assert body["rejected"] == []
    assert created["created"] is True
    assert created["identity"]["metadata"] == {}


def test_enroll_json_with_metadata(start_app: AppStarter, photo_dir: Path) -> None:
    client = start_app()
    photos = [lfw_bytes(photo_dir, "Colin_Powell", number) for number in (1, 2)]

    response = client.post(
        "/enroll",
        json={
            "name": "Colin Powell",
            "metadata": {"team": "A", "badge": 17},
            "images": ["data:image/jpeg;base64," + base64.b64encode(photo).decode() for photo in photos],
        },
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["identity"]["metadata"] == {"team": "A", "badge": 17}
    assert body["identity"]["face_count"] == 2
    for face in body["faces_added"]:
        assert set(face) == {"id", "image_index", "box", "quality"}


def test_enroll_metadata_multipart_json_text(start_app: AppStarter, photo_dir: Path) -> None:
    client = start_app()

    body = enroll(client, "Colin Powell", lfw_bytes(photo_dir, "Colin_Powell", 1), metadata='{"team": "B"}')

    assert body["identity"]["metadata"] == {"team": "B"}


def test_enroll_partly_rejected_keeps_good_photos(start_app: AppStarter, photo_dir: Path) -> None:
    client = start_app()
    good = lfw_bytes(photo_dir, "Colin_Powell", 1)
    no_face = (photo_dir / NO_FACE_PHOTO).read_bytes()

    response = client.post(
        "/enroll",
        files=[("images", ("good.jpg", good)), ("images", ("flower.jpg", no_face))],
        data={"name": "Colin Powell"},
    )

    assert response.status_code == 201
    body = response.json()
    assert body["identity"]["face_count"] == 1
    assert [face["image_index"] for face in body["faces_added"]] == [0]
    assert len(body["rejected"]) == 1
    rejected = body["rejected"][0]
    assert rejected["image_index"] == 1
    assert rejected["filename"] == "flower.jpg"
    assert rejected["code"] == "no-face"
    assert rejected["reasons"]


def test_enroll_no_face_rejected_with_reasons(client: TestClient, faces_dir: Path) -> None:
    no_face = (faces_dir / NO_FACE_PHOTO).read_bytes()

    response = client.post(
        "/enroll", files=[("images", ("a.jpg", no_face)), ("images", ("b.jpg", no_face))], data={"name": "Nobody"}
    )

    body = assert_problem(response, 422, "enrollment-rejected")
    assert [item["image_index"] for item in body["rejected"]] == [0, 1]
    for item in body["rejected"]:
        assert item["code"] == "no-face"
        assert item["reasons"] and all(reason.strip() for reason in item["reasons"])
    assert client.get("/identities", params={"name": "Nobody"}).json()["total"] == 0


def test_enroll_multiface_single_rejected(client: TestClient, faces_dir: Path) -> None:
    image = (faces_dir / MULTIFACE_PHOTO).read_bytes()

    response = client.post("/enroll", files=multipart_images("images", image), data={"name": "Group", "face": "single"})

    body = assert_problem(response, 422, "enrollment-rejected")
    assert body["rejected"][0]["code"] == "multiple-faces"
    assert "6 faces" in body["rejected"][0]["reasons"][0]


def test_enroll_multiface_largest_enrolled(start_app: AppStarter, faces_dir: Path) -> None:
    client = start_app()
    image = (faces_dir / MULTIFACE_PHOTO).read_bytes()
    largest_box = client.post("/detect", files=multipart_images("image", image)).json()["faces"][0]["box"]

    body = enroll(client, "Largest face", image, face="largest")

    assert body["identity"]["face_count"] == 1
    assert body["faces_added"][0]["box"] == largest_box


# /verify


def test_verify_same_person_true(client: TestClient, photo_dir: Path) -> None:
    # Cosine similarity 0.969 with dlib-resnet; other people stay below 0.90 (see support.py).
    images = [lfw_bytes(photo_dir, "Colin_Powell", number) for number in (1, 7)]

    response = client.post("/verify", files=multipart_images("images", *images))

    assert response.status_code == 200
    body = response.json()
    assert body["same_person"] is True
    assert body["similarity"] >= body["threshold"]
    assert len(body["faces"]) == 2


def test_verify_different_people_false(client: TestClient, photo_dir: Path) -> None:
    images = [lfw_bytes(photo_dir, "Colin_Powell", 1), lfw_bytes(photo_dir, *UNKNOWN_PERSON)]

    response = client.post("/verify", files=multipart_images("images", *images))

    assert response.status_code == 200
    body = response.json()
    assert body["same_person"] is False
    assert body["similarity"] < body["threshold"]


def test_verify_embeddings_match_images(client: TestClient, photo_dir: Path) -> None:
    images = [lfw_bytes(photo_dir, "George_W_Bush", number) for number in (1, 12)]
    embeddings = []
    for image in images:
        response = client.post("/embed", files=multipart_images("image", image))
        embeddings.append(response.json()["faces"][0]["embedding"])

    from_images = client.post("/verify", files=multipart_images("images", *images)).json()
    from_embeddings = client.post("/verify", json={"embeddings": embeddings}).json()

    assert from_embeddings["similarity"] == pytest.approx(from_images["similarity"], abs=2 * ROUNDING)
    assert from_embeddings["same_person"] == from_images["same_person"]
    assert from_embeddings["faces"] is None


def test_verify_threshold_option(client: TestClient, photo_dir: Path) -> None:
    images = [lfw_bytes(photo_dir, "Colin_Powell", number) for number in (1, 3)]

    response = client.post("/verify?threshold=0.999", files=multipart_images("images", *images))

    assert response.json()["threshold"] == 0.999
    assert response.json()["same_person"] is False


@pytest.mark.parametrize(
    "embeddings",
    [
        [[0.1] * 128],  # one embedding
        [[0.1] * 127, [0.1] * 127],  # wrong dimension
        [[0.1] * 128, [0.1] * 128, [0.1] * 128],  # three embeddings
        [[0.1] * 128, [0.0] * 128],  # zero vector
        [[[0.1] * 128], [[0.1] * 128]],  # one level too deep
        [[0.1, "x"] * 64, [0.1] * 128],  # not numbers
        [[10**400] * 128, [0.1] * 128],  # beyond float64
        "0.1, 0.2",
    ],
    ids=["one", "dimension-127", "three", "zero", "too-deep", "strings", "huge-integer", "string"],
)
def test_verify_wrong_embeddings_400(client: TestClient, embeddings: object) -> None:
    response = client.post("/verify", json={"embeddings": embeddings})

    body = assert_problem(response, 400, "invalid-input")
    assert body["field"] == "embeddings"


def test_verify_extreme_embedding_values(client: TestClient) -> None:
    # Parallel vectors at the edges of float32 and beyond still have cosine similarity 1.
    for scale in (1e-30, 1e30, 1e39, 1e300):
        response = client.post("/verify", json={"embeddings": [[scale] * 128, [1.0] * 128]})
        assert response.status_code == 200, f"{scale}: {response.text}"
        assert response.json()["similarity"] == pytest.approx(1.0, abs=ROUNDING)


# /embed and /detect


def test_embed_unit_norm_embeddings(client: TestClient, faces_dir: Path) -> None:
    response = client.post("/embed", files=multipart_images("image", (faces_dir / MULTIFACE_PHOTO).read_bytes()))

    assert response.status_code == 200
    body = response.json()
    dimension = client.app.state.runtime.service.pipeline.embedder.dimension
    assert body["dimension"] == dimension
    assert len(body["faces"]) == 6
    for face in body["faces"]:
        assert len(face["embedding"]) == dimension
        assert unit_norm(face["embedding"]) == pytest.approx(1.0, abs=1e-4)
        assert set(face["landmarks"]) == LANDMARK_NAMES


def test_embed_same_photo_same_embedding(client: TestClient, photo_dir: Path) -> None:
    image = lfw_bytes(photo_dir, "Colin_Powell", 1)

    first = client.post("/embed", files=multipart_images("image", image)).json()["faces"][0]["embedding"]
    second = client.post("/embed", json={"image": base64.b64encode(image).decode()}).json()["faces"][0]["embedding"]

    assert first == pytest.approx(second, abs=1e-6)


def test_detect_no_face_photo_empty(client: TestClient, faces_dir: Path) -> None:
    response = client.post("/detect", files=multipart_images("image", (faces_dir / NO_FACE_PHOTO).read_bytes()))

    assert response.status_code == 200
    assert response.json()["faces"] == []


def test_detect_multiface_photo_largest_first(client: TestClient, faces_dir: Path) -> None:
    response = client.post("/detect", files=multipart_images("image", (faces_dir / MULTIFACE_PHOTO).read_bytes()))

    faces = response.json()["faces"]
    assert len(faces) == 6
    areas = [(face["box"]["x2"] - face["box"]["x1"]) * (face["box"]["y2"] - face["box"]["y1"]) for face in faces]
    assert areas[0] == max(areas)
    for face in faces:
        assert "embedding" not in face
        assert set(face) == {"box", "landmarks", "detection_score", "quality"}


def test_verify_images_and_embeddings_rejected(client: TestClient, photo_dir: Path) -> None:
    image = base64.b64encode(lfw_bytes(photo_dir, "Colin_Powell", 1)).decode()
    response = client.post("/verify", json={"images": [image, image], "embeddings": [[1.0], [2.0]]})
    assert_problem(response, 400, "invalid-input")
    assert response.json()["field"] == "embeddings"


def test_enroll_same_photo_twice_rejected(client: TestClient, photo_dir: Path) -> None:
    photo = lfw_bytes(photo_dir, "Hugo_Chavez", 1)
    other = lfw_bytes(photo_dir, "Hugo_Chavez", 2)
    created = client.post("/enroll", data={"name": "Hugo Chavez"}, files=multipart_images("images", photo, photo))
    identity_id = created.json()["identity"]["id"]
    again = client.post("/enroll", data={"identity_id": identity_id}, files=multipart_images("images", photo, other))

    assert created.status_code == 201
    assert len(created.json()["faces_added"]) == 1
    assert created.json()["rejected"][0]["code"] == "duplicate-image"
    assert again.status_code == 200
    assert [face["image_index"] for face in again.json()["faces_added"]] == [1]
    assert again.json()["rejected"][0]["code"] == "duplicate-image"
    assert again.json()["identity"]["face_count"] == 2
