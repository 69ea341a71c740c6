"""How text becomes token ids."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_serializer, field_validator, model_validator

from components.common.config import Section


class FeaturesConfig(Section):
    """Text -> token ids for an EmbeddingBag-style model."""

    lowercase: bool = True
    # Feature groups: word n-grams and character n-grams; None drops a group (the search can try
    # either alone, which is how feature selection enters AutoML). At least one group is needed.
    word_ngrams: tuple[int, int] | None = (1, 2)
    char_ngrams: tuple[int, int] | None = None  # e.g. [3, 5]; None disables
    kind: Literal["hashing", "vocabulary"] = "hashing"
    num_buckets: int = Field(2**18, ge=16)  # hashing: id space; vocabulary: max size
    min_freq: int = Field(2, ge=1)  # vocabulary only
    max_tokens: int = Field(2000, ge=1)  # per document, to bound memory

    # A dropped group is written as [] (KFP parameters cannot carry null) and read back as None.
    @field_validator("word_ngrams", "char_ngrams", mode="before")
    @classmethod
    def _empty_is_none(cls, value):
        return None if value == [] or value == () else value

    @field_serializer("word_ngrams", "char_ngrams")
    def _none_is_empty(self, value):
        return [] if value is None else list(value)

    @model_validator(mode="after")
    def _ranges(self) -> FeaturesConfig:
        if self.word_ngrams is None and self.char_ngrams is None:
            raise ValueError("word_ngrams and char_ngrams are both null: keep at least one feature group")
        for name in ("word_ngrams", "char_ngrams"):
            rng = getattr(self, name)
            if rng is not None and not 1 <= rng[0] <= rng[1]:
                raise ValueError(f"{name}: expected [min, max] with 1 <= min <= max, got {list(rng)}")
        return self
