"""The one narrow write of a transcode outcome into the `videos` row (operator and embedded mode).

Guarded by `transcode_generation`: the API bumps it when the source is replaced, so a late outcome
of
an older generation (a slow Job, an operator catching up after a restart) never overwrites the newer
one. Idempotent: writing the same outcome twice leaves the row as it was.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from videoflix_core.db.models import Video
from videoflix_core.status import Outcome


def write_outcome(db: Session | Connection, outcome: Outcome) -> bool:
    """Write `outcome` into its videos row; False when the row is gone or already newer.

    The caller owns the transaction (commit/rollback), so this composes with other writes.
    """
    statement = (
        update(Video)
        .where(Video.id == outcome.video_id)
        .where(Video.transcode_generation <= outcome.transcode_generation)
        .values(
            transcode_generation=outcome.transcode_generation,
            processing_state=outcome.processing_state.value,
            processing_error=outcome.processing_error,
            converted_files=outcome.converted_files,
            thumbnail_key=outcome.thumbnail,
            sprite_key=outcome.sprite,
            storyboard_key=outcome.storyboard,
            duration_seconds=outcome.duration,
            progress=outcome.progress,
        )
        .execution_options(synchronize_session=False)
    )
    result = cast(CursorResult[Any], db.execute(statement))
    return bool(result.rowcount)
