"""Identity management: list, read, rename, change metadata, delete (with every face)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.concurrency import run_in_threadpool

from app.api.deps import ServiceDep
from app.schemas import IdentityDeleted, IdentityDetail, IdentityOut, IdentityPage, IdentityUpdate
from app.services.recognition import identity_summary

router = APIRouter(prefix="/identities", tags=["identities"])

# SQLite binds integers as signed 64-bit; a larger offset would fail inside the store.
MAX_OFFSET = 2**63 - 1


@router.get("", response_model=IdentityPage)
async def list_identities(
    service: ServiceDep,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    name: Annotated[str | None, Query(max_length=200, description="Case-insensitive substring of the name.")] = None,
) -> dict:
    """List identities, oldest first, one page at a time."""
    items, total = await run_in_threadpool(service.store.list_identities, offset=offset, limit=limit, name=name)
    return {"items": [identity_summary(item) for item in items], "total": total, "offset": offset, "limit": limit}


@router.get("/{identity_id}", response_model=IdentityDetail)
async def get_identity(identity_id: str, service: ServiceDep) -> dict:
    """Return one identity with its enrolled faces (no embeddings)."""
    identity = await run_in_threadpool(service.store.get_identity, identity_id)
    faces = await run_in_threadpool(service.store.list_faces, identity_id)
    return {
        **identity_summary(identity),
        "faces": [
            {
                "id": face.id,
                "embedder": face.embedder_id,
                "quality": face.quality,
                "image_sha256": face.image_sha256,
                "created_at": face.created_at,
                "has_crop": face.crop_path is not None,
            }
            for face in faces
        ],
    }


@router.patch("/{identity_id}", response_model=IdentityOut)
async def update_identity(identity_id: str, update: IdentityUpdate, service: ServiceDep) -> dict:
    """Rename an identity and/or replace its metadata."""
    identity = await run_in_threadpool(
        service.store.update_identity, identity_id, name=update.name, metadata=update.metadata
    )
    return identity_summary(identity)


@router.delete("/{identity_id}", response_model=IdentityDeleted)
async def delete_identity(identity_id: str, service: ServiceDep) -> dict:
    """Delete an identity with every face, embedding and stored crop derived from it."""
    removed = await run_in_threadpool(service.store.delete_identity, identity_id)
    return {"id": identity_id, "faces_removed": removed}


@router.delete("/{identity_id}/faces/{face_id}", status_code=204)
async def delete_face(identity_id: str, face_id: str, service: ServiceDep) -> Response:
    """Remove one enrolled face (and its crop) from an identity."""
    await run_in_threadpool(service.store.delete_face, identity_id, face_id)
    return Response(status_code=204)
