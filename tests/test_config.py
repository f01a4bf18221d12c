"""Configuration: every error at once with its key path; every setting documented."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import BaseModel

from mssante.cli import main
from mssante.config import Config, ConfigError, load_config, parse_duration

DOCS = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"


def _keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        ann = field.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += _keys(ann, f"{prefix}{name}.")
        else:
            out.append(prefix + name)
    return out


def test_every_setting_is_documented() -> None:
    text = DOCS.read_text(encoding="utf-8")
    missing = [k for k in _keys(Config) if f"`{k}`" not in text]
    assert missing == []


BAD = """
data_dir = "data"
[operator]
domains = ["example.com", "Bad Domain"]
hostname = "mx.example.mssante.fr"
[storage]
active_key = "k2"
[[storage.keys]]
id = "k1"
key = "c2hvcnQ="
[tls]
cert_file = "a.pem"
key_file = "a.key"
trust_anchors = "ca.pem"
min_version = "1.1"
[smtp.submission]
port = 70000
[relay]
queue_lifetime = "five days"
[relay.routes]
"a.mssante.fr" = "nohostport"
"""


def test_all_errors_reported_with_key_paths(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = "\n".join(info.value.problems)
    for fragment in (
        "operator.domains:",
        "storage.keys[0].key:",
        "tls.min_version:",
        "smtp.submission.port:",
        "relay.queue_lifetime:",
        "relay.routes:",
    ):
        assert fragment in text, (fragment, text)


def test_cli_config_check_reports_all(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(BAD)
    result = CliRunner().invoke(main, ["config", "check", str(path)])
    assert result.exit_code == 1
    assert "smtp.submission.port" in result.output
    assert "problem(s) found" in result.output


def test_toml_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_text("[operator\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "TOML syntax" in info.value.problems[0]


@pytest.mark.parametrize(
    ("value", "seconds"), [(30, 30), ("30s", 30), ("15m", 900), ("4h", 14400), ("5d", 432000)]
)
def test_durations(value: object, seconds: int) -> None:
    assert parse_duration(value) == seconds


def test_init_writes_a_valid_config(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["init", str(tmp_path / "op"), "--domain", "ch-x.mssante.fr"])
    assert result.exit_code == 0, result.output
    cfg = load_config(tmp_path / "op" / "mssante.toml")
    assert cfg.operator.domains == ["ch-x.mssante.fr"]
    assert cfg.tls.cert_file.exists()
    refused = CliRunner().invoke(
        main, ["init", str(tmp_path / "op2"), "--domain", "ch.example.com"]
    )
    assert refused.exit_code == 2
