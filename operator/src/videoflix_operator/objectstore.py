"""A video's objects in S3: deleting them (cleanup on delete and on supersede) and reading a step's
stored result."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from videoflix_operator.config import OperatorSettings


def default_chain_has_credentials() -> bool:
    """Whether boto3's default chain (AWS_* env, web identity token, profile, instance role)
    resolves credentials here."""
    return boto3.Session().get_credentials() is not None


def store_wanted(settings: OperatorSettings, chain_has_credentials: Callable[[], bool]) -> bool:
    """Whether the operator builds an object store (without one, cleanup leaves objects behind).

    Keys or an endpoint are explicit S3 settings; `s3_ambient_credentials` (the chart's
    `ambientCredentials`, IRSA-style) and credentials the default chain finds by itself mean the
    SDK signs without keys in our settings. The chain is asked last: it may probe the network.
    """
    if settings.s3_endpoint_url or settings.s3_access_key_id or settings.s3_ambient_credentials:
        return True
    return chain_has_credentials()


class ObjectStore:
    def __init__(self, settings: OperatorSettings) -> None:
        # Keys left None: boto3 falls back to its default credential chain (ambient credentials).
        self._client: Any = boto3.client(
            "s3",
            endpoint_url=settings.s3_endpoint_url,
            aws_access_key_id=settings.s3_access_key_id or None,
            aws_secret_access_key=settings.s3_secret_access_key or None,
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

    def _get(self, bucket: str, key: str) -> bytes | None:
        try:
            response = self._client.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code", "")) in {"404", "NoSuchKey"}:
                return None
            raise
        body: bytes = response["Body"].read()
        return body

    async def get(self, bucket: str, key: str) -> bytes | None:
        """A small object's bytes (a step's stored result); None when there is none. Other
        errors raise: "unknown" must not be read as "absent"."""
        return await asyncio.to_thread(self._get, bucket, key)
