"""The in-memory custom-object API the launcher unit tests share (no API server runs on these
machines; tests/standins/kubernetes/apiserver.py is the HTTP stand-in for the RBAC tests). It models only what a
launcher relies on: objects by name, what was created and deleted; subclasses add a watch whose
status moves."""

from __future__ import annotations

import copy


class FakeObjects:
    def __init__(self, existing: dict | None = None):
        self.objects: dict[str, dict] = {}
        self.created: list[str] = []
        self.deleted: list[str] = []
        if existing:
            self.objects[existing["metadata"]["name"]] = existing

    def get(self, name, namespace):
        return self.objects.get(name)

    def create(self, manifest):
        self.objects[manifest["metadata"]["name"]] = copy.deepcopy(manifest)
        self.created.append(manifest["metadata"]["name"])
        return manifest

    def delete(self, name, namespace):
        self.objects.pop(name, None)
        self.deleted.append(name)
