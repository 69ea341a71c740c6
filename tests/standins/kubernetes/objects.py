"""In-process Kubernetes objects, for the tests that hand an API object to the code directly
instead of a `kubernetes` client: the launchers (Katib, Spark, TrainJob), deploy and the release
controller. The rules are the HTTP stand-in's (rules.py); a refused call raises what
`components.cluster.kube.call_api` raises for the real client's answer (the same ClusterError
text and `.status`), so the code under test sees one error either way.

- `CustomObjects`: one kind of namespaced custom object: get, create, JSON merge patch, delete,
  every write recorded; subclasses in the launcher tests add a watch whose status moves.
- `InferenceServices`: the same for InferenceServices, with KServe's controller (rules.kserve_status)
  reconciling each write a moment later, a watch, and Events.
"""

from __future__ import annotations

import copy
import threading
import time

from components.cluster.deploy import merge_patch
from components.cluster.kube import api_error
from tests.standins.kubernetes import rules


class CustomObjects:
    """`admission=False` for the launcher tests, whose objects are sketches of a launcher's
    manifest (each launcher validates its real manifest before it sends)."""

    def __init__(self, existing: dict | None = None, admission: bool = True):
        self.objects: dict[tuple[str, str], dict] = {}
        self.writes: list[tuple[str, dict]] = []  # (verb, object after the write)
        self.created: list[str] = []
        self.deleted: list[str] = []  # names, in the order delete was called (present or not)
        self.version = 0
        self.cond = threading.Condition()
        self.admission = admission
        if existing:
            with self.cond:
                self._store(_key(existing), existing, "existing")

    def get(self, name, namespace):
        with self.cond:
            obj = self.objects.get((namespace, name))
            return copy.deepcopy(obj) if obj else None

    def create(self, manifest):
        key = _key(manifest)
        with self.cond:
            if key in self.objects:
                raise _refused("create", key, rules.Refused(409, "AlreadyExists", f'"{key[1]}" already exists'))
            obj = copy.deepcopy(manifest)
            self._admit("create", key, obj, None)
            obj["metadata"].update(generation=1, uid=f"uid-{key[1]}")
            self.created.append(key[1])
            stored = self._store(key, obj, "create")
        self._written(key)
        return stored

    def patch(self, name, namespace, patch):
        key = (namespace, name)
        with self.cond:
            current = self.objects.get(key)
            if current is None:
                raise _refused("patch", key, rules.Refused(404, "NotFound", f'"{name}" not found'))
            patch = copy.deepcopy(patch)
            wanted = (patch.get("metadata") or {}).pop("resourceVersion", None)
            try:
                obj = rules.replaced(current, merge_patch(current, patch), wanted, "objects", name,
                                     check=lambda new, old: self._admit("patch", key, new, old))
            except rules.Refused as refused:
                raise _refused("patch", key, refused) from refused
            stored = self._store(key, obj, "patch")
        self._written(key)
        return stored

    def delete(self, name, namespace):
        with self.cond:
            if self.objects.pop((namespace, name), None) is not None:
                self.version += 1
                self.writes.append(("delete", {"metadata": {"name": name, "namespace": namespace}}))
                self.cond.notify_all()
            self.deleted.append(name)

    def stored(self, name, namespace) -> dict:
        """The object as held (not a copy): a test's stand-in controller writes its status here."""
        return self.objects[(namespace, name)]

    def _admit(self, verb, key, obj, old):
        if self.admission:
            try:
                rules.admit(obj, old)
            except rules.Refused as refused:
                raise _refused(verb, key, refused) from refused

    def _store(self, key, obj, verb):
        self.version += 1
        obj["metadata"]["resourceVersion"] = str(self.version)
        self.objects[key] = obj
        self.writes.append((verb, copy.deepcopy(obj)))
        self.cond.notify_all()
        return copy.deepcopy(obj)

    def _written(self, key):
        """After a write, outside the lock: where a controller would reconcile."""


class InferenceServices(CustomObjects):
    def __init__(self, reconcile_delay_s: float = 0.05, controller: bool = True):
        super().__init__()
        self.events: list[dict] = []
        self.patches: list[dict] = []
        self.reconcile_delay_s, self.controller = reconcile_delay_s, controller
        self.revisions: dict[tuple[str, str], list[str]] = {}  # revision templates, in creation order
        self.service_url: str | None = None  # status.url; default http://NAME.NAMESPACE.example.com
        self.service_urls: dict[str, str] = {}  # status.url of one InferenceService by name

    def patch(self, name, namespace, patch):
        stored = super().patch(name, namespace, patch)
        self.patches.append(copy.deepcopy(patch))  # the patches the API accepted
        return stored

    def watch(self, name, namespace, timeout_s):
        deadline = time.monotonic() + timeout_s
        seen = None
        while True:
            with self.cond:
                while (obj := self.objects.get((namespace, name))) is None or \
                        obj["metadata"]["resourceVersion"] == seen:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    self.cond.wait(left)
                seen = obj["metadata"]["resourceVersion"]
                snapshot = copy.deepcopy(obj)
            yield snapshot

    def event(self, obj, reason, message, type_="Normal"):
        self.events.append({"object": obj["metadata"]["name"], "reason": reason, "message": message, "type": type_})

    def _written(self, key):
        if self.controller:
            threading.Timer(self.reconcile_delay_s, self._reconcile, args=(key,)).start()

    def _reconcile(self, key):
        with self.cond:
            if key not in self.objects:
                return
            obj = copy.deepcopy(self.objects[key])
            namespace, name = key
            rules.kserve_status(obj, self.revisions.setdefault(key, []),
                                self.service_urls.get(name) or self.service_url
                                or f"http://{name}.{namespace}.example.com")
            self._store(key, obj, "status")


def _key(manifest: dict) -> tuple[str, str]:
    return manifest["metadata"].get("namespace", ""), manifest["metadata"]["name"]


def _refused(verb: str, key: tuple[str, str], refused: rules.Refused):
    return api_error(f"{verb} {key[0]}/{key[1]}", refused.code, refused.reason, refused.message)
