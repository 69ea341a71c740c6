"""The canary settings the release tests share: two steps (20%, 50%), two failed intervals to roll
back, few requests per interval and tight thresholds, so a fault shows within seconds."""

from __future__ import annotations

from components.stages.release.config import CanaryConfig

FAST = CanaryConfig(step_weights=[20, 50], max_weight=50, threshold=2, min_requests=8, max_p99_latency_ms=40,
                    max_latency_ratio=4.0, max_prediction_js=0.3, max_accuracy_drop=0.1, min_labelled=10)
