"""The data report (Evidently) settings."""

from __future__ import annotations

from pydantic import Field

from components.common.config import Section


class ReportConfig(Section):
    drift_share: float = Field(0.5, gt=0, le=1)
    max_rows: int = Field(50_000, ge=100)  # rows sampled per side for the Evidently report
