"""The managed Jobs as the watch last reported them, so reconciles and the scheduler never LIST.

Fed by kopf's Job watch (an index handler, so kopf holds every other handler back until the
initial listing is in: a restarted operator never plans against an empty cache) and by the
operator's own writes (the API server's answer to a create, release or annotate), so a reconcile
right after a create sees the Job before its watch event arrives.

Bounded by what exists in the cluster: each Job is kept as one compact JSON string of the few
fields the decisions read (`slim_job`), about half a KiB, until its DELETED event; unfinished
Jobs are also kept parsed, for the scheduler's pass.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from videoflix_core.transcode import (
    ANNOTATION_PRIORITY,
    ANNOTATION_SUBMITTED,
    GROUP,
    KIND,
    LABEL_SPEC_HASH,
    LABEL_TRANSCODE,
    VERSION,
)

from videoflix_operator.plan import is_finished, job_load

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)
# The conditions plan() and the scheduler read; the rest (SuccessCriteriaMet, …) are dropped.
_CONDITIONS = ("Complete", "Failed")
_ANNOTATIONS = (ANNOTATION_PRIORITY, ANNOTATION_SUBMITTED)
_STATUS = (
    "active", "succeeded", "failed", "startTime", "completionTime",
    "completedIndexes", "failedIndexes",  # Indexed Jobs (chunked renditions)
)
# The spec fields the scheduler counts an Indexed Job's pods by (`plan.job_pods`).
_SPEC = ("parallelism", "completions", "completionMode")


def slim_job(job: Mapping[str, Any]) -> Obj:
    """The fields of a Job that `plan`, `select_releases` and `job_result` read, nothing else."""
    meta = job.get("metadata") or {}
    annotations = meta.get("annotations") or {}
    status = job.get("status") or {}
    spec = job.get("spec") or {}
    slim_status: Obj = {k: status[k] for k in _STATUS if status.get(k) is not None}
    conditions = [
        {
            k: c[k]
            for k in ("type", "status", "reason", "message", "lastTransitionTime")
            if c.get(k) is not None
        }
        for c in status.get("conditions") or []
        if c.get("type") in _CONDITIONS
    ]
    if conditions:
        slim_status["conditions"] = conditions
    return {
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),  # which pods are its own (`plan.owned_pods`)
            "labels": dict(meta.get("labels") or {}),
            "annotations": {k: annotations[k] for k in _ANNOTATIONS if k in annotations},
            "creationTimestamp": meta.get("creationTimestamp"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "spec": {
            "suspend": bool(spec.get("suspend")),
            # Only an Indexed Job's: every other Job of ours is one pod, and stays as small.
            **(
                {k: spec[k] for k in _SPEC if spec.get(k) is not None}
                if spec.get("completionMode") == "Indexed"
                else {}
            ),
        },
        "status": slim_status,
    }


def is_newer(candidate: str | None, known: str | None) -> bool:
    """Whether a Job version may replace the cached one. Watch events of one object come in
    order, but the operator's own writes overtake them: a late event of the version before a
    release must not make a running Job look suspended again (the scheduler would exceed the
    cap). Resource versions are etcd revisions; anything unparsable is taken as newer."""
    if known is None or candidate is None:
        return True
    try:
        return int(candidate) >= int(known)
    except ValueError:
        return True


@dataclass
class JobCache:
    # (namespace, CR name) → Job name → compact JSON of `slim_job`.
    _by_owner: dict[Key, dict[str, str]] = field(default_factory=dict)
    _owner_of: dict[Key, Key] = field(default_factory=dict)  # (namespace, Job) → owner key
    _unfinished: dict[Key, Obj] = field(default_factory=dict)  # (namespace, Job) → slim Job
    # `plan.total_load` of `_unfinished`, kept as Jobs change: a create decides in O(1), not
    # by walking every unfinished Job (a third of the CPU with 5,000 Jobs queued).
    _running: int = 0
    _queued: int = 0
    # Jobs whose last `put` changed what the decisions read, until `take_changed` asks.
    _changed: set[Key] = field(default_factory=set)

    def __len__(self) -> int:
        return len(self._owner_of)

    def put(self, job: Mapping[str, Any]) -> bool:
        """Record a Job as seen; False (ignored) when an older version than the cached one."""
        slim = slim_job(job)
        meta = slim["metadata"]
        namespace, name = str(meta["namespace"]), str(meta["name"])
        owner_name = meta["labels"].get(LABEL_TRANSCODE)
        if not owner_name:
            return False
        key = (namespace, name)
        owner = (namespace, str(owner_name))
        known = self._by_owner.get(owner, {}).get(name)
        if known is not None:
            old = json.loads(known)
            if not is_newer(meta.get("resourceVersion"), old["metadata"].get("resourceVersion")):
                return False
            old["metadata"]["resourceVersion"] = meta.get("resourceVersion")
            if old != slim:
                self._changed.add(key)
        else:
            self._changed.add(key)
        self._by_owner.setdefault(owner, {})[name] = json.dumps(slim, separators=(",", ":"))
        self._owner_of[key] = owner
        self._drop_unfinished(key)
        if not is_finished(slim):
            self._unfinished[key] = slim
            running, queued = job_load(slim)
            self._running += running
            self._queued += queued
        return True

    def _drop_unfinished(self, key: Key) -> None:
        old = self._unfinished.pop(key, None)
        if old is not None:
            running, queued = job_load(old)
            self._running -= running
            self._queued -= queued

    def take_changed(self, namespace: str, name: str) -> bool:
        """Whether the Job changed in a way a reconcile would see since the last ask. Most Job
        events do not (pod readiness counts, uncounted terminations, our own release echoed
        back), and one reconcile less per such event was half of all reconciles."""
        key = (namespace, name)
        if key in self._changed:
            self._changed.discard(key)
            return True
        return False

    def take_changed_owners(self) -> set[Key]:
        """The CRs of every Job changed since last asked (after a LIST), the flags cleared."""
        owners = {self._owner_of[key] for key in self._changed if key in self._owner_of}
        self._changed.clear()
        return owners

    def remove(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self._changed.discard(key)
        owner = self._owner_of.pop(key, None)
        self._drop_unfinished(key)
        if owner is None:
            return
        jobs = self._by_owner.get(owner)
        if jobs is not None:
            jobs.pop(name, None)
            if not jobs:
                del self._by_owner[owner]

    def drop_missing(self, namespace: str | None, listed: set[Key], version: str) -> int:
        """After a full LIST at `version`: forget the Jobs of `namespace` (None: all) it did not
        return, unless the cache learnt of them after the LIST was served. Returns how many."""
        gone = []
        for key, owner in self._owner_of.items():
            if key in listed or (namespace is not None and key[0] != namespace):
                continue
            cached = json.loads(self._by_owner[owner][key[1]])["metadata"].get("resourceVersion")
            if not is_newer(cached, version) or cached == version:
                gone.append(key)
        for key in gone:
            self.remove(*key)
        return len(gone)

    def jobs_of(self, namespace: str, cr_name: str) -> list[Obj]:
        """The CR's Jobs (fresh copies: callers may keep or change them)."""
        return [json.loads(s) for s in self._by_owner.get((namespace, cr_name), {}).values()]

    def unfinished(self) -> list[Obj]:
        """Every unfinished managed Job, in every namespace: all the scheduler needs."""
        return list(self._unfinished.values())

    def load(self) -> tuple[int, int]:
        """`plan.total_load(self.unfinished())`, without the walk."""
        return self._running, self._queued

    def running_owners(self) -> dict[Key, str | None]:
        """(namespace, CR) with a released, unfinished Job → the spec hash of its newest such
        Job: the transcodes whose pods may print progress, and which spec they work for."""
        newest: dict[Key, tuple[str, str | None]] = {}
        for (namespace, _), job in self._unfinished.items():
            if job["spec"]["suspend"]:
                continue
            meta = job["metadata"]
            owner = (namespace, str(meta["labels"].get(LABEL_TRANSCODE)))
            created = str(meta.get("creationTimestamp") or "")
            if owner not in newest or created >= newest[owner][0]:
                newest[owner] = (created, meta["labels"].get(LABEL_SPEC_HASH))
        return {owner: spec for owner, (_, spec) in newest.items()}


def slim_transcode(body: Mapping[str, Any]) -> Obj:
    """A VideoTranscode without what the reconciler never reads: managedFields and kopf's own
    annotations (its last-handled configuration is a second copy of the spec)."""
    meta = dict(body.get("metadata") or {})
    meta.pop("managedFields", None)
    annotations = meta.get("annotations") or {}
    meta["annotations"] = {k: v for k, v in annotations.items() if not k.startswith("videoflix.io")}
    return {
        # An Event posted on the CR names it by these (kopf.event's involvedObject).
        "apiVersion": body.get("apiVersion") or f"{GROUP}/{VERSION}",
        "kind": body.get("kind") or KIND,
        "metadata": meta,
        "spec": body.get("spec") or {},
        "status": body.get("status") or {},
    }


@dataclass
class TranscodeCache:
    """The VideoTranscodes as last seen (watch, the resync's LIST, our own status patches), one
    compact JSON string each: a reconcile triggered by a Job event reads its CR from here
    instead of GETting it."""

    _bodies: dict[Key, str] = field(default_factory=dict)
    _versions: dict[Key, str | None] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self._bodies)

    def put(self, body: Mapping[str, Any]) -> bool:
        meta = body.get("metadata") or {}
        key = (str(meta.get("namespace")), str(meta.get("name")))
        version = meta.get("resourceVersion")
        if key in self._versions and not is_newer(version, self._versions[key]):
            return False
        self._bodies[key] = json.dumps(slim_transcode(body), separators=(",", ":"))
        self._versions[key] = version
        return True

    def get(self, namespace: str, name: str) -> Obj | None:
        raw = self._bodies.get((namespace, name))
        return json.loads(raw) if raw is not None else None

    def remove(self, namespace: str, name: str) -> None:
        self._bodies.pop((namespace, name), None)
        self._versions.pop((namespace, name), None)
