"""YAML config: safe_load only, one group per step, errors that name the key."""

import pytest

from sfx_cnn_veto import ConfigError
from sfx_cnn_veto.config import load_config, parse_config


def test_defaults_and_a_full_config(tmp_path):
    assert load_config(None).model.backend == "auto"
    path = tmp_path / "c.yaml"
    path.write_text(
        "model: {path: m.keras, backend: keras, batch_size: 32, threads: 2}\n"
        "decision: {threshold: 0.3, fail_open: true}\n"
        "crop: {center: [880.5, 875], geometry: detector.geom}\n"
        "reader: {dataset: /entry_1/data_1/data, prefix: /beam/}\n"
        "om: {anything: 1}\nplugins: {mine: {x: 1}}\n"
    )
    cfg = load_config(path)
    assert cfg.model.batch_size == 32 and cfg.decision.threshold == 0.3
    assert cfg.crop.center == [880.5, 875.0] and cfg.plugins == {"mine": {"x": 1}}
    assert cfg.crop.geometry == "detector.geom" and cfg.group("om") == {"anything": 1}


@pytest.mark.parametrize(
    "data, message",
    [
        ({"modle": {}}, "modle: unknown key; allowed keys: model, decision, crop, reader, crystfel, om, psana, plugins"),
        ({"model": {"pth": "x"}}, "model.pth: unknown key; allowed keys: path, backend, batch_size, threads"),
        ({"model": {"batch_size": "64"}}, "model.batch_size: expected an integer, got str '64' (type int)"),
        ({"decision": {"threshold": "high"}}, "decision.threshold: expected a number, got str 'high' (type float or null)"),
        ({"decision": {"threshold": 2}}, "decision.threshold: expected a number in [0, 1], got 2.0"),
        ({"crop": {"center": [1]}}, "crop.center: expected [row, col], got [1.0]"),
        ({"crop": {"geometry": 5}}, "crop.geometry: expected a string, got int 5 (type str or null)"),
        ({"crop": {"geom": "a.geom"}}, "crop.geom: unknown key; allowed keys: center, geometry"),
        ({"decision": {"fail_open": "yes"}}, "decision.fail_open: expected true or false"),
        (["not", "a", "mapping"], "config: expected a mapping, got list"),
    ],
)
def test_errors_name_key_type_and_allowed_keys(data, message):
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert message in str(info.value)


def test_python_tags_are_refused(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.yaml"
    path.write_text(f"model: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match="not valid YAML for safe_load"):
        load_config(path)
    assert not marker.exists()
