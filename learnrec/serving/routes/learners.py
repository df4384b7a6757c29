"""A learner's own data: their profile, erasure, and opting out of personalisation."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException

from learnrec.schemas import Learner
from learnrec.serving.deps import LearnerCaller, Store
from learnrec.storage import PrivacyStore

router = APIRouter()


@router.put("/learners/{user_id}/profile", response_model=Learner)
async def put_profile(learner: LearnerCaller, profile: Learner, store: Store) -> Learner:
    if profile.user_id != learner.user_id:
        raise HTTPException(422, "the profile's user_id must match the path")
    store.upsert_learners([profile.model_copy(update={"user_id": learner.key})])
    return profile


@router.delete("/learners/{user_id}", status_code=200)
async def erase(learner: LearnerCaller, store: Store) -> dict[str, Any]:
    """Erase a learner (the right to erasure) and keep them untracked from now on.

    The database forgets them at once; the erasure sweep removes them from the event
    archive, the pipeline's data and the model bundles within the stated bound.
    """
    erased = PrivacyStore(store.engine).erase_learner(learner.key)
    return {"user_id": learner.user_id, "erased": erased, "untracked": True}


@router.post("/learners/{user_id}/opt-out")
async def opt_out(learner: LearnerCaller, store: Store) -> dict[str, Any]:
    store.set_opt_out(learner.key, True)
    return {"user_id": learner.user_id, "opted_out": True}
