"""What a person does to a rollout on KServe (`kubectl conveyor canary|rollout promote|rollback|pause|
resume`): each verb checks the phase allows it, applies the patches, and keeps on the rollout who
did it (the SelfSubjectReview username the plugin got), so the release step can put it in the
audit log."""

from __future__ import annotations

from typing import Any

from components.common.errors import ClusterError
from components.stages.release.analysis import CanaryState
from components.stages.release.kserve_state import ROUTE, promote_patches, read_state, rollback_patches, weight_patch
from components.stages.release.rollout import now
from components.stages.release.strategies import switch


class ManualVerbs:
    """Mixed into the controller (components.stages.release.cluster.CanaryController), which provides
    get, _apply and _end_routed."""

    def _manual(self, want: tuple[str, ...], verb: str) -> tuple[dict[str, Any], CanaryState]:
        obj = self.get()
        state = read_state(obj)
        if state is None or state.phase not in want:
            phase = state.phase if state else "no rollout"
            raise ClusterError(f"InferenceService {self.namespace}/{self.name}: cannot {verb} a canary that is "
                               f"{phase} (expected {' or '.join(want)})")
        return obj, state

    def _end_by_user(self, verb: str, action: str, phase: str, weight: int, patches, message: str,
                     by: str) -> CanaryState:
        obj, state = self._manual(("Progressing", "Paused"), verb)
        state.phase, state.weight = phase, weight
        state.history.append({"at": now(), "action": action, "weight": weight, "failed": state.failed,
                              "checks": [], "by": by})
        state.verbs.append({"at": now(), "verb": action, "by": by})
        if (obj["metadata"].get("annotations") or {}).get(ROUTE):
            self._end_routed(obj, state, action == "promote", f"Canary{phase}", f"{message} ({by})")
        else:
            self._apply(obj, patches(obj), state, f"Canary{phase}", f"{message} ({by})")
        return state

    def promote(self, full: bool = False, by: str = "user") -> CanaryState:
        """Canary: all traffic to the candidate now. Blue-green before the switch: the switch (as
        Argo Rollouts' promote), post-promotion analysis still to run; `full` skips that too.
        `by`: who, as the API server authenticated them (the plugin's SelfSubjectReview)."""
        obj, state = self._manual(("Progressing", "Paused"), "promote")
        if state.strategy == "bluegreen" and state.stage == "preview" and not full:
            switch(state)
            state.history.append({"at": now(), "action": "switch", "weight": 100, "failed": 0, "checks": [],
                                  "stage": "preview", "by": by})
            state.verbs.append({"at": now(), "verb": "switch", "by": by})
            self._apply(obj, [weight_patch(obj, 100)], state, "BlueGreenSwitched",
                        f"switched by {by}; run `kubectl conveyor rollout analyze` for post-promotion analysis")
            return state
        return self._end_by_user("promote", "promote", "Promoted", 100, promote_patches, "promoted by user", by)

    def rollback(self, by: str = "user") -> CanaryState:
        return self._end_by_user("roll back", "rollback", "RolledBack", 0, rollback_patches, "rolled back by user",
                                 by)

    def pause(self, by: str = "user") -> CanaryState:
        obj, state = self._manual(("Progressing",), "pause")
        state.phase = "Paused"
        state.verbs.append({"at": now(), "verb": "pause", "by": by})
        self._apply(obj, [{}], state, "CanaryPaused", f"paused by {by} at {state.weight}%")
        return state

    def resume(self, by: str = "user") -> CanaryState:
        obj, state = self._manual(("Paused",), "resume")
        state.phase = "Progressing"
        state.verbs.append({"at": now(), "verb": "resume", "by": by})
        self._apply(obj, [{}], state, "CanaryResumed", f"resumed by {by} at {state.weight}%")
        return state
