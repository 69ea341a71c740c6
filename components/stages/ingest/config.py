"""What ingestion reads (sources, formats, labels) and what a valid row is (cleaning)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from components.common.config import Section, SparkConfig

FORMATS = ("auto", "email", "csv", "jsonl", "parquet", "text")


class SourceSettings(Section):
    """How raw files are read and labelled."""

    format: Literal["auto", "email", "csv", "jsonl", "parquet", "text"] = "auto"
    text_col: str = "text"
    label_col: str = "label"
    # Tabular sources: the column naming each row's group; default is the file's stem.
    source_col: str | None = None
    # Folder sources: glob patterns on file names.
    include: list[str] = Field(default_factory=lambda: ["*"])
    exclude: list[str] = Field(default_factory=list)
    # Text encoding of CSV/JSONL/text files (emails declare their own charsets).
    encoding: str = "utf-8"
    # An email whose declared MIME structure the parser could not find (a boundary that never
    # appears, ...) would be read as its raw multipart body. "quarantine" it as broken_mime, or
    # "accept" it as that text; either way the manifest counts accepted rows' defects by name.
    mime_defects: Literal["quarantine", "accept"] = "quarantine"
    # Raw label (or folder name) -> label, e.g. SpamAssassin's group folders -> ham/spam.
    label_map: dict[str, str] = Field(default_factory=dict)
    # Assign `source` by keyword (first match wins) for corpora without natural groups. Written as
    # a mapping in YAML; kept as an ordered list of (source, keywords) because the order decides
    # ties and a mapping's order does not survive KFP's parameter (protobuf Struct) encoding.
    source_keywords: list[tuple[str, list[str]]] = Field(default_factory=list)

    @field_validator("source_keywords", mode="before")
    @classmethod
    def _ordered_rules(cls, value):
        return list(value.items()) if isinstance(value, dict) else value
    # Keep only rows whose source (after keyword rules) is listed; the rest are quarantined as
    # `not_selected`. Set per collection by data.reference_select / data.production_select.
    select_sources: list[str] | None = None


class CleaningConfig(Section):
    """What a valid row is. Part of the dataset version id: change it and the version changes."""

    min_chars: int = Field(1, ge=0)
    max_chars: int = Field(100_000, ge=1)
    labels: list[str] | None = None  # None: any non-empty label is accepted
    strip_whitespace: bool = True
    unicode_normalization: Literal["NFC", "NFKC", "none"] = "NFC"
    dedup_against_parent: bool = True
    # The quarantine keeps each refused row's raw bytes, so that what was refused can be inspected
    # and replayed exactly (integrity: nothing lost). Raw rows may hold personal data that cleaning
    # never reached (headers, attachments); false keeps the reason, source file and row, not the bytes.
    # Not part of the version id: it changes what the quarantine keeps, never which rows are accepted.
    quarantine_raw: bool = True

    def identity(self) -> dict:
        """What the dataset version id depends on: the rules that decide the accepted rows."""
        return self.model_dump(mode="json", exclude={"quarantine_raw"})

    @model_validator(mode="after")
    def _bounds(self) -> CleaningConfig:
        if self.min_chars > self.max_chars:
            raise ValueError(f"min_chars ({self.min_chars}) > max_chars ({self.max_chars})")
        if self.labels is not None and not self.labels:
            raise ValueError("labels: give at least one label, or leave it out to accept any")
        return self


class DataConfig(Section):
    dataset: str = "spamassassin"
    # Who runs ingest: this process ("local", streaming, flat memory) or Apache Spark ("spark").
    # Both give the same version for the same input and cleaning config.
    engine: Literal["local", "spark"] = "local"
    # engine=local: processes that decode, validate and hash in parallel (None or 0: the cores this
    # process may use, a pod's CPU limit included). Any number gives the same version.
    workers: int | None = Field(None, ge=0)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    # Sources for the reference (training) data and the later production batch.
    reference: list[str] = Field(default_factory=list)
    production: list[str] = Field(default_factory=list)
    source: SourceSettings = Field(default_factory=SourceSettings)
    # Collections cut from the same files by source/topic (e.g. one CSV of many topics): the
    # sources each collection keeps. None keeps every row.
    reference_select: list[str] | None = None
    production_select: list[str] | None = None

    def settings_for(self, collection: Literal["reference", "production"]) -> SourceSettings:
        select = self.reference_select if collection == "reference" else self.production_select
        return self.source.model_copy(update={"select_sources": select}) if select else self.source
