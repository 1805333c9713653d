"""Database models and migrations shared by the API, the operator and the embedded mode."""

from videoflix_core.db.models import (
    Base,
    Favorite,
    RateLimitBucket,
    RefreshFamily,
    RefreshToken,
    SingleUseToken,
    TokenPurpose,
    User,
    Video,
)

__all__ = [
    "Base",
    "Favorite",
    "RateLimitBucket",
    "RefreshFamily",
    "RefreshToken",
    "SingleUseToken",
    "TokenPurpose",
    "User",
    "Video",
]
