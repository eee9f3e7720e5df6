from pathlib import Path

import pytest

from deepinterest.config import RunConfig, load_config, save_config
from deepinterest.errors import ConfigError


def test_toml_and_yaml_load_the_same(tmp_path):
    (tmp_path / "c.toml").write_text('workdir = "out"\n[data]\nsource = "data"\nformat = "p5"\n'
                                     "[split]\nmax_history = 10\n[eval]\nks = [10, 5, 20]\n")
    (tmp_path / "c.yaml").write_text("workdir: out\ndata:\n  source: data\n  format: p5\n"
                                     "split:\n  max_history: 10\neval:\n  ks: [10, 5, 20]\n")
    a, b = load_config(tmp_path / "c.toml"), load_config(tmp_path / "c.yaml")
    assert a == b
    assert a.eval.ks == [5, 10, 20] and a.split.max_history == 10
    assert Path(a.data.source) == tmp_path / "data"  # relative to the config file
    assert a.workdir == Path("out")  # relative to where the user runs


def test_patience_zero_in_a_file_turns_early_stopping_off(tmp_path):
    (tmp_path / "c.toml").write_text("[train.sft]\npatience = 0\n[train.rl]\npatience = 0\n")
    cfg = load_config(tmp_path / "c.toml")
    assert cfg.train.sft.patience is None and cfg.train.rl.patience is None
    (tmp_path / "c.toml").write_text("[train.sft]\npatience = -1\n")
    with pytest.raises(ConfigError, match="patience"):
        load_config(tmp_path / "c.toml")


def test_unknown_key_names_file_line_and_key(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[data]\nsource = "default"\n\n[split]\nmax_histroy = 5\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert str(path) in text and "line 5" in text and "split.max_histroy" in text


def test_wrong_type_says_what_was_expected(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("split:\n  max_history: many\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "line 2" in str(err.value) and "integer" in str(err.value)
    assert "'many'" in str(err.value)


@pytest.mark.parametrize("name, text, needle", [
    ("c.toml", "[data\n", "invalid TOML"),
    ("c.yaml", "a: [1,\n", "invalid YAML"),
    ("c.json", "{}", "unknown config type"),
    ("c.yaml", "- 1\n- 2\n", "top level"),
])
def test_unreadable_configs(tmp_path, name, text, needle):
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=needle):
        load_config(tmp_path / name)


def test_save_then_load_round_trip(tmp_path):
    cfg = RunConfig(workdir=tmp_path / "w")
    cfg.eval.ks = [1, 3]
    save_config(cfg, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml") == cfg


def test_component_names_are_checked_against_the_registry_with_file_and_line(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[tokenize]\nquantizer = "rkmean"\n[tokenize.encoder]\nkind = "st"\n'
                    '[train]\nbackbone = "t6"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = str(err.value)
    assert "line 2, key 'tokenize.quantizer': Value error, unknown quantizer 'rkmean'; " \
        "use one of: rkmeans, rqvae" in text
    assert "line 4, key 'tokenize.encoder.kind'" in text and "auto, hf, sentence-transformers" in text
    assert "line 6, key 'train.backbone'" in text and "causal-lm" in text and "t5" in text


def test_cli_overrides_describe_the_config_fields_they_override():
    from typer.testing import CliRunner

    from deepinterest.cli import app
    from deepinterest.config import SFTConfig

    result = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "300"})
    assert f"{SFTConfig.model_fields['epochs'].description} (config default: " \
        f"{SFTConfig().epochs})" in result.output


def test_an_error_in_a_list_entry_names_that_entrys_line(tmp_path):
    from deepinterest.errors import ConfigError

    yaml_cfg = tmp_path / "c.yaml"
    yaml_cfg.write_text("train:\n  rl:\n    rewards:\n      - name: exact\n        weight: 1.0\n"
                        "      - name: prefix\n        weight: .nan\n")
    with pytest.raises(ConfigError, match=r"line 7, key 'train.rl.rewards.1.weight'"):
        load_config(yaml_cfg)
    toml_cfg = tmp_path / "c.toml"
    toml_cfg.write_text('[[mine.miners]]\nbackend = "embedding"\n\n[[mine.miners]]\n'
                        'backend = "nope"\n')
    with pytest.raises(ConfigError, match=r"line 5, key 'mine.miners.1.backend'"):
        load_config(toml_cfg)


def test_every_example_config_loads_and_its_views_agree_with_its_backbone():
    from deepinterest.train.stage import check_views

    examples = sorted((Path(__file__).parent.parent / "examples").glob("*.toml"))
    assert len(examples) >= 3
    for path in examples:
        cfg = load_config(path)
        check_views(cfg.train, cfg.tokenize.second is not None)
    views = load_config(examples[0].parent / "beauty-views.toml")
    assert views.train.backbone == "t5-views"
    assert views.tokenize.second_view().interest_mode == "fusion"
    assert views.tokenize.second_view().collab_weight == 0.0 < views.tokenize.collab_weight
