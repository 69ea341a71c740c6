"""The config: errors name the field; the bundled configs load."""

from __future__ import annotations

import pytest

from components.common.errors import ConfigError
from components.composition.config import config_from_dict, load_config


def test_config_errors_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match=r"cleaning: Value error, min_chars \(9\) > max_chars \(2\)"):
        config_from_dict({"cleaning": {"min_chars": 9, "max_chars": 2}})
    with pytest.raises(ConfigError, match=r"features: .*word_ngrams: expected \[min, max\]"):
        config_from_dict({"features": {"word_ngrams": [3, 1]}})
    with pytest.raises(ConfigError, match=r"data\.sourse: Extra inputs are not permitted"):
        config_from_dict({"data": {"sourse": {}}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_bundled_configs_load():
    from components.common.config import PROJECT_ROOT

    for name in ("spamassassin", "tweets"):
        cfg = load_config(PROJECT_ROOT / "configs" / f"{name}.yaml")
        assert cfg.data.dataset == name and cfg.data.reference
