"""Explanations by exact occlusion: how much each token of a text moves the model's answer.

The unit is a token as the featurizer tokenizes (a word after NFC and lower-casing). Removing a
token removes every feature it takes part in (its word n-grams and character n-grams), so the
effect of token t on class c is

    effect[t, c] = logodds(c | text) - logodds(c | text with every occurrence of t removed)
    logodds(c) = log p(c) - log(1 - p(c))

computed by re-encoding the token list without t and running the same forward pass the predictor
runs: no sampling, no gradients, the same for every model family. Positive means the token pushes
the text towards c. Log-odds, not probabilities: a confident model (p = 0.9999) moves its
probability by almost nothing when one token goes, while its log-odds still say by how much the
evidence changed (for a linear model over token presence, the effect is exactly that token's
weight). Cost is bounded: at most `max_tokens` distinct tokens are occluded per text
(the most frequent ones, ties by first position), so one text costs at most max_tokens + 1
forward rows; `complete` says whether every distinct token was explained.

Global importance (the model card) is the mean effect over a sample of documents, a token counting
0 in a document that lacks it, so it weighs how strong and how common a token's evidence is.
Pure: tokenize and score are passed in, so this module imports no framework.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

# score(token lists) -> log-probabilities (n, classes), rows in the order given
Score = Callable[[list[list[str]]], np.ndarray]
CHUNK_ROWS = 2048  # forward rows per call: bounds the memory of one encode
# What `effect` means, as the explain response and the gate report say it.
EFFECT_MEANING = ("class log-odds with the token minus without it: positive pushes the text towards the class, "
                  "and removing the token lowers the class log-odds by this much")


@dataclass(frozen=True)
class ExplainLimits:
    max_tokens: int = 64  # distinct tokens occluded per text
    top_k: int = 10  # tokens listed per class

    def __post_init__(self):
        if self.max_tokens < 1 or self.top_k < 1:
            raise ValueError(f"explain limits must be at least 1, got {self}")


def occluded_tokens(tokens: Sequence[str], max_tokens: int) -> list[str]:
    """The distinct tokens to occlude, in first-occurrence order: all of them, or the max_tokens
    most frequent (ties by first position)."""
    first: dict[str, int] = {}
    for i, token in enumerate(tokens):
        first.setdefault(token, i)
    if len(first) <= max_tokens:
        return list(first)
    counts = Counter(tokens)
    chosen = sorted(first, key=lambda t: (-counts[t], first[t]))[:max_tokens]
    return sorted(chosen, key=first.__getitem__)


def log_odds(log_probs: np.ndarray) -> np.ndarray:
    """log p(c) - log(1 - p(c)) for every class, from log-probabilities (stable near p = 1)."""
    log_probs = np.asarray(log_probs, dtype=np.float64)
    out = np.empty_like(log_probs)
    for c in range(log_probs.shape[1]):
        out[:, c] = log_probs[:, c] - np.logaddexp.reduce(np.delete(log_probs, c, axis=1), axis=1)
    return out


def _scores(rows: list[list[str]], score: Score) -> np.ndarray:
    parts = [score(rows[i:i + CHUNK_ROWS]) for i in range(0, len(rows), CHUNK_ROWS)]
    return np.concatenate(parts) if parts else np.empty((0, 0))


def occlusion_effects(docs: Sequence[Sequence[str]], score: Score, max_tokens: int
                      ) -> list[tuple[np.ndarray, list[str], np.ndarray]]:
    """Per document: (log-probabilities, occluded tokens, effects (tokens, classes)), all documents
    scored in shared batches."""
    rows: list[list[str]] = []
    plan = []
    for tokens in docs:
        tokens = list(tokens)
        units = occluded_tokens(tokens, max_tokens)
        plan.append((len(rows), units))
        rows.append(tokens)
        rows.extend([t for t in tokens if t != unit] for unit in units)
    scores = _scores(rows, score)
    odds = log_odds(scores) if len(rows) else scores
    out = []
    for start, units in plan:
        out.append((scores[start], units, odds[start][None, :] - odds[start + 1:start + 1 + len(units)]))
    return out


def explain_tokens(tokens: Sequence[str], score: Score, labels: Sequence[str],
                   limits: ExplainLimits = ExplainLimits()) -> dict[str, Any]:
    """One text's explanation: prediction, per-token effects on every class, top tokens per class."""
    return explain_many([tokens], score, labels, limits)[0]


def explain_texts(loaded, texts: Sequence[str], limits: ExplainLimits | None = None) -> list[dict[str, Any]]:
    """Explanations of each text by a registry model (components.stages.registry.store.LoadedModel: its
    featurizer's tokenize and its log-probabilities)."""
    docs = [loaded.featurizer.tokenize(t) for t in texts]
    return explain_many(docs, loaded.predict_log_proba_tokenized, loaded.featurizer.labels, limits or ExplainLimits())


def explain_many(docs: Sequence[Sequence[str]], score: Score, labels: Sequence[str],
                 limits: ExplainLimits = ExplainLimits()) -> list[dict[str, Any]]:
    results = []
    for tokens, (base, units, effects) in zip(docs, occlusion_effects(docs, score, limits.max_tokens),
                                              strict=True):
        counts = Counter(tokens)
        predicted = int(np.argmax(base))
        probabilities = np.exp(base)
        per_token = [{"token": unit, "count": counts[unit],
                      "effect": {label: round(float(effects[j, c]), 6) for c, label in enumerate(labels)}}
                     for j, unit in enumerate(units)]
        top = {}
        for c, label in enumerate(labels):
            order = np.argsort(-effects[:, c], kind="stable") if len(units) else []
            top[label] = [{"token": units[j], "effect": round(float(effects[j, c]), 6)}
                          for j in order[:limits.top_k] if effects[j, c] > 0]
        results.append({
            "label": labels[predicted],
            "probabilities": {label: float(probabilities[c]) for c, label in enumerate(labels)},
            "method": "occlusion", "effect": EFFECT_MEANING,
            "tokens": per_token, "top_tokens": top,
            "distinct_tokens": len(counts), "explained_tokens": len(units),
            "complete": len(units) == len(counts)})
    return results


def global_importance(docs: Sequence[Sequence[str]], score: Score, labels: Sequence[str],
                      max_tokens: int = 32, top_k: int = 15, min_documents: int = 3) -> dict[str, Any]:
    """Mean occlusion effect (log-odds) of each token over `docs`, the top_k per class among tokens
    explained in at least min_documents of them."""
    return importance_of(occlusion_effects(docs, score, max_tokens), labels, max_tokens, top_k, min_documents)


def importance_of(effects: list[tuple[np.ndarray, list[str], np.ndarray]], labels: Sequence[str],
                  max_tokens: int, top_k: int = 15, min_documents: int = 3) -> dict[str, Any]:
    """global_importance from occlusion_effects(docs, score, max_tokens) the caller already has."""
    sums: dict[str, np.ndarray] = {}
    seen: Counter[str] = Counter()
    for _base, units, doc_effects in effects:
        for j, unit in enumerate(units):
            sums[unit] = sums.get(unit, 0.0) + doc_effects[j]
            seen[unit] += 1
    tokens = sorted(t for t in sums if seen[t] >= min_documents)
    per_class = {}
    for c, label in enumerate(labels):
        ranked = sorted(tokens, key=lambda t: (-sums[t][c], t))[:top_k]
        per_class[label] = [{"token": t, "mean_effect": round(float(sums[t][c] / len(effects)), 6),
                             "documents": seen[t]} for t in ranked if sums[t][c] > 0]
    return {"method": "mean occlusion effect", "documents": len(effects), "max_tokens_per_document": max_tokens,
            "min_documents": min_documents, "per_class": per_class}
