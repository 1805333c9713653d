"""Deleting a video's objects from S3 (cleanup on delete and on supersede)."""

from __future__ import annotations

import asyncio
from typing import Any

import boto3
from botocore.config import Config

from videoflix_operator.config import OperatorSettings


class ObjectStore:
    def __init__(self, settings: OperatorSettings) -> None:
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            aws_access_key_id=settings.s3_access_key_id,
            aws_secret_access_key=settings.s3_secret_access_key,
            region_name=settings.s3_region,
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                read_timeout=30,
                s3={"addressing_style": "path"},
            ),
        )

    def _delete_prefix(self, bucket: str, prefix: str, keep: frozenset[str]) -> int:
        deleted = 0
        paginator = self._client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            keys = [o["Key"] for o in page.get("Contents", []) if o["Key"] not in keep]
            if not keys:
                continue
            response = self._client.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
            )
            errors = response.get("Errors") or []
            if errors:
                raise RuntimeError(f"could not delete {len(errors)} objects under {prefix}")
            deleted += len(keys)
        return deleted

    async def delete_prefix(
        self, bucket: str, prefix: str, keep: frozenset[str] = frozenset()
    ) -> int:
        """Delete every object under `prefix` except `keep`; returns how many went."""
        if not prefix.endswith("/") or prefix.count("/") < 2:
            raise ValueError(f"refusing to delete a prefix this broad: {prefix!r}")
        return await asyncio.to_thread(self._delete_prefix, bucket, prefix, keep)
