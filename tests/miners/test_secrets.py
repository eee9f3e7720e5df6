"""Keys typed where they do not belong are refused or scrubbed, never written or echoed."""

import json
import runpy
import uuid
from pathlib import Path

import pytest
from typer.testing import CliRunner

from deepinterest import registry
from deepinterest.cli import app
from deepinterest.config import MineConfig, load_config
from deepinterest.errors import ConfigError
from deepinterest.miners.stage import mine_stage
from deepinterest.secrets import REDACTED, looks_like_key, redact, scrub_url

runner = CliRunner()


def _key() -> str:
    return f"sk-proj-{uuid.uuid4().hex}"


def _written(root: Path) -> str:
    return "".join(p.read_bytes().decode("latin-1") for p in root.rglob("*") if p.is_file())


def test_redact_scrubs_urls_secret_names_and_key_shaped_values():
    key = _key()
    config = {"base_url": f"http://user:{key}@host:8000/v1?token={key}", "api_key": "x",
              "api_key_env": "OPENAI_API_KEY", "nested": [{"model": key, "path": "runs/a_b"}]}
    assert redact(config) == {"base_url": "http://host:8000/v1", "api_key": REDACTED,
                              "api_key_env": "OPENAI_API_KEY",
                              "nested": [{"model": REDACTED, "path": "runs/a_b"}]}
    assert scrub_url("http://localhost:8000/v1") == "http://localhost:8000/v1"
    for name in ("OPENAI_API_KEY", "gpt-4o-mini", "meta-llama/Llama-3.1-8B", "claude-haiku-4-5"):
        assert not looks_like_key(name), name


def test_a_key_typed_as_api_key_env_stops_di_run_before_anything_is_written(tmp_path):
    key = _key()
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'workdir = "{tmp_path / "work"}"\n[[mine.miners]]\nbackend = "openai"\n'
                   f'options = {{ model = "m", api_key_env = "{key}" }}\n')
    result = runner.invoke(app, ["run", "--config", str(cfg)])
    assert result.exit_code != 0
    assert "api_key_env must be the name of an environment variable" in result.output
    assert key not in result.output and key not in _written(tmp_path).replace(cfg.read_text(), "")
    assert not (tmp_path / "work").exists()


def test_an_unknown_mine_key_holding_a_key_is_named_but_not_echoed(tmp_path):
    key = _key()
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'[mine]\napi_key = "{key}"\nlimit = "many"\n')
    with pytest.raises(ConfigError) as err:
        load_config(cfg)
    message = str(err.value)
    assert "mine.api_key" in message and key not in message
    assert "'many'" in message  # values that are not secrets are still shown


def test_an_unset_key_variable_is_an_error_remote_and_a_warning_local(tmp_path, monkeypatch):
    monkeypatch.delenv("DI_TEST_NO_SUCH_KEY", raising=False)
    pytest.importorskip("openai")
    options = dict(model="m", api_key_env="DI_TEST_NO_SUCH_KEY", cache=str(tmp_path / "c"))
    with pytest.raises(ConfigError, match="DI_TEST_NO_SUCH_KEY is not set"):
        registry.create("miners", "openai", base_url="https://api.example.com/v1", **options)
    with pytest.raises(ConfigError, match="DI_TEST_NO_SUCH_KEY is not set"):
        registry.create("miners", "openai", **options)
    with pytest.warns(UserWarning, match="DI_TEST_NO_SUCH_KEY"):
        registry.create("miners", "openai", base_url="http://127.0.0.1:9/v1", **options)


def test_credentials_in_base_url_reach_no_file_the_mine_stage_writes(tmp_path, monkeypatch):
    pytest.importorskip("openai")
    shared = runpy.run_path(str(Path(__file__).with_name("fake_llm_server.py")))
    key = _key()
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-env-key-0000")
    src = tmp_path / "src"
    src.mkdir()
    (src / "user_sequence.txt").write_text("u1 A B C\n")
    (src / "x.item").write_text("item_id:token\ttitle:token\nA\tMat\nB\tBottle\nC\tShoes\n")
    dataset = tmp_path / "dataset"
    assert runner.invoke(app, ["data", "prepare", str(src), "--out", str(dataset)]).exit_code == 0
    with shared["FakeLLMServer"]() as server:
        url = server.openai_url.replace("http://", f"http://user:{key}@")
        cfg = MineConfig(miners=[{"backend": "openai", "options": {
            "model": "fake", "base_url": url, "cache": str(tmp_path / "c.sqlite"),
            "progress": False}}], users="none")
        result = mine_stage(cfg, dataset, tmp_path / "interests", progress=False)
    written = _written(result.path)
    assert key not in written and "user:" not in written
    manifest = json.loads((result.path / "manifest.json").read_text())
    assert manifest["config"]["miners"][0]["options"]["base_url"] == server.openai_url
