"""Sources by topic: keyword rules that set a row's `source`, and the selector that keeps only
some sources (a collection cut from one file by topic). Pure: Arrow arrays in, arrays out; the
executor, the Spark engine and the ingest workers all use it."""

from __future__ import annotations

import re

import pyarrow as pa
import pyarrow.compute as pc

from components.stages.ingest.config import SourceSettings


def _topics(text, source, settings: SourceSettings):
    """Keyword rules overwrite `source` (first matching rule wins, case-insensitive)."""
    if not settings.source_keywords:
        return source
    lowered = pc.utf8_lower(text)
    for name, words in reversed(settings.source_keywords):
        pattern = "|".join(_regex_escape(w.lower()) for w in words)
        source = pc.if_else(pc.fill_null(pc.match_substring_regex(lowered, pattern), False), pa.scalar(name),
                            source)
    return source


def assign_sources(table: pa.Table, settings: SourceSettings) -> pa.Table:
    if not settings.source_keywords:
        return table
    source = _topics(table.column("text"), table.column("source"), settings)
    return table.set_column(table.schema.get_field_index("source"), "source", source)


def source_selector(settings: SourceSettings):
    """The Cleaner's `select` for settings.select_sources (None when every source is kept)."""
    if not settings.select_sources:
        return None
    wanted = pa.array(settings.select_sources, pa.string())

    def select(text, source):
        topics = _topics(text, source, settings)
        keep = pc.fill_null(pc.is_in(topics, value_set=wanted), False)
        return keep, lambda i: f"source {topics[i].as_py()!r} is not one of {settings.select_sources}"

    return select


def _regex_escape(word: str) -> str:
    return re.escape(word)
