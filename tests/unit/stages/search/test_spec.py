"""The search spec: every bad field refused by name; the bundled configs' specs are valid."""

from __future__ import annotations

import pytest
import yaml

from components.common.errors import SpecError
from components.composition.config import ConveyorConfig
from components.stages.search.spec import parse_spec
from tests.support.search_specs import with_


@pytest.mark.parametrize("raw, message", [
    (with_(algorithm="bayes"), "search: algorithm 'bayes' is unknown; expected one of"),
    (with_(parameters=[{"name": "lr", "type": "double", "min": 1, "max": 0.1}]),
     "search.parameters.0: lr: min 1.0 > max 0.1"),
    (with_(parameters=[{"name": "embed_dim", "type": "categorical", "values": []}]),
     "search.parameters.0: embed_dim: a categorical parameter needs a non-empty values list"),
    (with_(objective={"metric": "acuracy"}), "search.objective: metric 'acuracy' is not reported by training"),
    (with_(objective={"goal": "maximise"}), "search.objective.goal: Input should be 'maximize' or 'minimize'"),
    (with_(parameters=[{"name": "learning_rate", "type": "double", "min": 0.1, "max": 1}]),
     "search.parameters: parameter 'learning_rate': train has no field 'learning_rate'"),
    (with_(parallel_trials=9), "parallel_trials (9) > max_trials (4)"),
    (with_(parameters=[{"name": "lr", "type": "double", "min": 0.0, "max": 1, "log": True}]),
     "a log-scale range needs min > 0"),
    (with_(algorith="tpe"), "search.algorith: Extra inputs are not permitted"),
    (with_(objective={"cv_folds": 3}), "a cross-validated objective (objective.cv_folds) arrives once, after training"),
    (with_(objective={"metric": "loss", "goal": "minimize", "cv_folds": 3}, early_stopping={"algorithm": "none"}),
     "a cross-validated objective is accuracy or macro_f1"),
    (with_(parameters=[{"name": "dropout", "type": "double", "min": 1.5, "max": 2.0}]),
     "search.parameters: parameters: train.dropout: Input should be less than 1"),
])
def test_a_bad_spec_is_refused_naming_the_field(raw, message):
    with pytest.raises(SpecError) as err:
        parse_spec(raw)
    assert message in str(err.value)


def test_the_default_config_search_spec_is_valid():
    from components.common.config import PROJECT_ROOT
    from components.composition.config import load_config

    for name in ("spamassassin", "tweets"):
        spec = parse_spec(load_config(PROJECT_ROOT / "configs" / f"{name}.yaml").search)
        assert spec.max_trials >= 8 and spec.parallel_trials >= 2
    assert yaml.safe_dump(ConveyorConfig().model_dump(mode="json"))
