"""Identity management over HTTP: list, read, rename, metadata, delete identities and faces."""

from __future__ import annotations

import sqlite3
from datetime import datetime
from pathlib import Path

from fastapi.testclient import TestClient

from tests.app.support import (
    PROBE_PHOTOS,
    AppStarter,
    assert_problem,
    display_name,
    enroll,
    enroll_people,
    identify,
    lfw_bytes,
)


def count_rows(data_dir: Path) -> dict[str, int]:
    """Count the rows of the identities and faces tables straight from the SQLite file."""
    connection = sqlite3.connect(data_dir / "gallery.sqlite3")
    try:
        return {
            table: connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("identities", "faces")
        }
    finally:
        connection.close()


def count_identity_rows(data_dir: Path, identity_id: str) -> dict[str, int]:
    connection = sqlite3.connect(data_dir / "gallery.sqlite3")
    try:
        identities = connection.execute("SELECT count(*) FROM identities WHERE id = ?", (identity_id,)).fetchone()[0]
        faces = connection.execute("SELECT count(*) FROM faces WHERE identity_id = ?", (identity_id,)).fetchone()[0]
    finally:
        connection.close()
    return {"identities": identities, "faces": faces}


# delete


def test_delete_identity_removed_everywhere(start_app: AppStarter, photo_dir: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    client = start_app(data_dir, store_crops=True)
    identity_ids = enroll_people(client, photo_dir)
    deleted = identity_ids["Colin_Powell"]
    probe = lfw_bytes(photo_dir, "Colin_Powell", PROBE_PHOTOS["Colin_Powell"])
    assert identify(client, probe)["faces"][0]["identity"]["id"] == deleted
    assert count_identity_rows(data_dir, deleted) == {"identities": 1, "faces": 2}
    assert len(list((data_dir / "crops" / deleted).glob("*.png"))) == 2

    response = client.delete(f"/identities/{deleted}")

    assert response.status_code == 200
    assert response.json() == {"id": deleted, "faces_removed": 2}
    # /identify no longer matches it, not even below the threshold.
    face = identify(client, probe, top_k="100")["faces"][0]
    assert face["identity"] is None or face["identity"]["id"] != deleted
    assert deleted not in {match["identity_id"] for match in face["matches"]}
    assert len(face["matches"]) == len(identity_ids) - 1
    # The API no longer lists it.
    listed = client.get("/identities").json()
    assert deleted not in {item["id"] for item in listed["items"]}
    assert listed["total"] == len(identity_ids) - 1
    assert_problem(client.get(f"/identities/{deleted}"), 404, "identity-not-found")
    assert_problem(client.delete(f"/identities/{deleted}"), 404, "identity-not-found")
    # The SQLite file and the crops folder no longer hold it.
    assert count_identity_rows(data_dir, deleted) == {"identities": 0, "faces": 0}
    assert count_rows(data_dir) == {"identities": 4, "faces": 8}
    assert not list((data_dir / "crops" / deleted).glob("*.png"))
    assert client.get("/readyz").json()["gallery_faces"] == 8


def test_delete_face_drops_face_count(start_app: AppStarter, photo_dir: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    client = start_app(data_dir)
    photos = [lfw_bytes(photo_dir, "Colin_Powell", number) for number in (1, 2)]
    created = enroll(client, "Colin Powell", *photos)
    identity_id = created["identity"]["id"]
    face_id = created["faces_added"][0]["id"]

    response = client.delete(f"/identities/{identity_id}/faces/{face_id}")

    assert response.status_code == 204
    assert response.content == b""
    detail = client.get(f"/identities/{identity_id}").json()
    assert detail["face_count"] == 1
    assert [face["id"] for face in detail["faces"]] == [created["faces_added"][1]["id"]]
    assert count_identity_rows(data_dir, identity_id) == {"identities": 1, "faces": 1}
    assert_problem(client.delete(f"/identities/{identity_id}/faces/{face_id}"), 404, "face-not-found")


def test_delete_last_face_keeps_identity(start_app: AppStarter, photo_dir: Path) -> None:
    client = start_app()
    created = enroll(client, "Colin Powell", lfw_bytes(photo_dir, "Colin_Powell", 1))
    identity_id = created["identity"]["id"]

    client.delete(f"/identities/{identity_id}/faces/{created['faces_added'][0]['id']}")

    assert client.get(f"/identities/{identity_id}").json()["face_count"] == 0
    probe = lfw_bytes(photo_dir, "Colin_Powell", PROBE_PHOTOS["Colin_Powell"])
    assert identify(client, probe)["faces"][0]["matches"] == []


def test_delete_face_of_other_identity_404(start_app: AppStarter, photo_dir: Path) -> None:
    client = start_app()
    first = enroll(client, "Colin Powell", lfw_bytes(photo_dir, "Colin_Powell", 1))
    second = enroll(client, "George W Bush", lfw_bytes(photo_dir, "George_W_Bush", 1))

    response = client.delete(f"/identities/{second['identity']['id']}/faces/{first['faces_added'][0]['id']}")

    assert_problem(response, 404, "face-not-found")
    assert client.get(f"/identities/{first['identity']['id']}").json()["face_count"] == 1


# read


def test_get_identity_lists_faces(start_app: AppStarter, photo_dir: Path) -> None:
    client = start_app()
    photos = [lfw_bytes(photo_dir, "Colin_Powell", number) for number in (1, 2)]
    created = enroll(client, "Colin Powell", *photos)

    response = client.get(f"/identities/{created['identity']['id']}")

    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "Colin Powell"
    assert body["face_count"] == 2
    assert {face["id"] for face in body["faces"]} == {face["id"] for face in created["faces_added"]}
    embedder_id = client.app.state.runtime.service.pipeline.embedder_id
    for face in body["faces"]:
        assert set(face) == {"id", "embedder", "quality", "image_sha256", "created_at", "has_crop"}
        assert face["embedder"] == embedder_id
        assert len(face["image_sha256"]) == 64
        assert face["has_crop"] is False


# update


def test_patch_renames_and_replaces_metadata(start_app: AppStarter, photo_dir: Path) -> None:
    client = start_app()
    created = enroll(client, "Colin Powel", lfw_bytes(photo_dir, "Colin_Powell", 1), metadata='{"team": "A"}')
    identity_id = created["identity"]["id"]

    response = client.patch(f"/identities/{identity_id}", json={"name": "  Colin Powell  ", "metadata": {"role": "x"}})

    assert response.status_code == 200
    body = response.json()
    assert body["name"] == "Colin Powell"  # surrounding whitespace stripped
    assert body["metadata"] == {"role": "x"}  # replaced, not merged
    assert datetime.fromisoformat(body["updated_at"]) > datetime.fromisoformat(created["identity"]["updated_at"])
    assert body["created_at"] == created["identity"]["created_at"]
    assert client.get(f"/identities/{identity_id}").json()["name"] == "Colin Powell"
    # /identify reports the new name.
    probe = lfw_bytes(photo_dir, "Colin_Powell", PROBE_PHOTOS["Colin_Powell"])
    assert identify(client, probe)["faces"][0]["identity"]["name"] == "Colin Powell"


def test_patch_metadata_only_keeps_name(start_app: AppStarter, photo_dir: Path) -> None:
    client = start_app()
    identity_id = enroll(client, "Colin Powell", lfw_bytes(photo_dir, "Colin_Powell", 1))["identity"]["id"]

    body = client.patch(f"/identities/{identity_id}", json={"metadata": {"desk": 4}}).json()

    assert body["name"] == "Colin Powell"
    assert body["metadata"] == {"desk": 4}


def test_patch_invalid_name_rejected(start_app: AppStarter, photo_dir: Path) -> None:
    client = start_app()
    identity_id = enroll(client, "Colin Powell", lfw_bytes(photo_dir, "Colin_Powell", 1))["identity"]["id"]

    for name in ["", "   ", "a\nb", "x" * 201]:
        response = client.patch(f"/identities/{identity_id}", json={"name": name})
        assert_problem(response, 422, "invalid-identity")
    assert client.get(f"/identities/{identity_id}").json()["name"] == "Colin Powell"


def test_patch_unknown_field_rejected(client: TestClient) -> None:
    response = client.patch("/identities/whatever", json={"nickname": "x"})

    body = assert_problem(response, 422, "validation-error")
    assert body["errors"][0]["field"] == "nickname"


# list


def test_list_identities_paging(start_app: AppStarter, photo_dir: Path) -> None:
    client = start_app()
    identity_ids = enroll_people(client, photo_dir)
    enrolled_order = list(identity_ids.values())  # oldest first

    pages = [client.get("/identities", params={"offset": offset, "limit": 2}).json() for offset in (0, 2, 4, 6)]

    assert [page["total"] for page in pages] == [5, 5, 5, 5]
    assert [page["offset"] for page in pages] == [0, 2, 4, 6]
    assert [page["limit"] for page in pages] == [2, 2, 2, 2]
    assert [len(page["items"]) for page in pages] == [2, 2, 1, 0]
    assert [item["id"] for page in pages for item in page["items"]] == enrolled_order
    for item in pages[0]["items"]:
        assert set(item) == {"id", "name", "metadata", "face_count", "created_at", "updated_at"}
        assert item["face_count"] == 2


def test_list_identities_name_filter(start_app: AppStarter, photo_dir: Path) -> None:
    client = start_app()
    identity_ids = enroll_people(client, photo_dir)

    john = client.get("/identities", params={"name": "JOHN"}).json()
    jun = client.get("/identities", params={"name": "jun"}).json()
    nobody = client.get("/identities", params={"name": "Serena"}).json()

    assert john["total"] == 1
    assert [item["id"] for item in john["items"]] == [identity_ids["John_Ashcroft"]]
    assert [item["name"] for item in jun["items"]] == [display_name("Junichiro_Koizumi")]
    assert nobody == {"items": [], "total": 0, "offset": 0, "limit": 50}


def test_list_identities_bad_paging_rejected(client: TestClient) -> None:
    for params in ({"limit": 0}, {"limit": 501}, {"offset": -1}, {"offset": 2**63}, {"limit": "ten"}):
        assert_problem(client.get("/identities", params=params), 422, "validation-error")
