"""Settings that would leave a service open are refused; keys in query strings stay out of logs."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from gpu_optimizer.settings import GpuOptSettings
from pose_analyzer.settings import PoseSettings
from service_kit.jsonlog import JsonFormatter
from service_kit.redact import redact_secrets
from service_kit.settings import is_loopback, load_settings


@pytest.mark.parametrize("host", ["127.0.0.1", "127.3.4.5", "::1", "[::1]", "localhost", "LOCALHOST"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "", "10.0.0.7", "192.168.1.2", "example.org", "localhost.evil"]
)
def test_hosts_reachable_from_the_network(host: str) -> None:
    assert not is_loopback(host)


@pytest.mark.parametrize("value", ["", "   ", "\t"])
def test_an_empty_key_from_the_environment_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("POSE_API_KEY", value)
    with pytest.raises(ValidationError, match="set but empty"):
        PoseSettings(log_dir=None)


def test_a_public_bind_needs_a_key_or_an_explicit_anonymous() -> None:
    with pytest.raises(ValidationError, match="GPUOPT_ALLOW_ANONYMOUS"):
        GpuOptSettings(log_dir=None, host="0.0.0.0")
    anonymous = GpuOptSettings(log_dir=None, host="0.0.0.0", allow_anonymous=True)
    assert not anonymous.ops_endpoints_protected, "nothing to protect with: no key"
    keyed = GpuOptSettings(log_dir=None, host="0.0.0.0", api_key=SecretStr("k"))
    assert keyed.ops_endpoints_protected, "off loopback the ops endpoints ask for the key by default"


def test_ops_protection_defaults_off_on_loopback_and_can_be_forced() -> None:
    assert not PoseSettings(log_dir=None, api_key=SecretStr("k")).ops_endpoints_protected
    assert PoseSettings(
        log_dir=None, api_key=SecretStr("k"), protect_ops_endpoints=True
    ).ops_endpoints_protected
    assert not PoseSettings(
        log_dir=None, host="0.0.0.0", api_key=SecretStr("k"), protect_ops_endpoints=False
    ).ops_endpoints_protected
    with pytest.raises(ValidationError, match="POSE_PROTECT_OPS_ENDPOINTS=true needs POSE_API_KEY"):
        PoseSettings(log_dir=None, protect_ops_endpoints=True)


def test_load_settings_exits_with_a_message_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GPUOPT_API_KEY", " ")
    monkeypatch.setenv("GPUOPT_LOG_DIR", "")
    with pytest.raises(SystemExit) as exited:
        load_settings(GpuOptSettings)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "GPUOPT_API_KEY: the API key is set but empty" in err


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("GET /x?api_key=abc HTTP/1.1", "GET /x?api_key=<redacted> HTTP/1.1"),
        ('"GET /x?a=1&api_key=abc&b=2 HTTP/1.1" 200', '"GET /x?a=1&api_key=<redacted>&b=2 HTTP/1.1" 200'),
        ("/ws/s?api%5Fkey=abc", "/ws/s?api%5Fkey=<redacted>"),
        ("/ws/s?API_KEY=abc'def", "/ws/s?API_KEY=<redacted>"),
        ("/x?api_key=a%20b#frag", "/x?api_key=<redacted>#frag"),
        ("/x?not_api_key=keep&key=keep", "/x?not_api_key=keep&key=keep"),
        ("no query here", "no query here"),
    ],
)
def test_redaction(line: str, expected: str) -> None:
    assert redact_secrets(line) == expected


def test_uvicorn_access_records_are_redacted_in_json_lines(tmp_path: Path) -> None:
    # The record uvicorn.access emits: the request target is an argument, not in the format string.
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5555", "GET", "/api/exercises?api_key=hunter2-secret", "1.1", 200),
        None,
    )
    record.path = "/ws/streams/a?api_key=hunter2-secret"
    line = JsonFormatter("svc", "digest").format(record)
    assert "hunter2-secret" not in line
    event = json.loads(line)
    assert event["msg"] == '127.0.0.1:5555 - "GET /api/exercises?api_key=<redacted> HTTP/1.1" 200'
    assert event["path"] == "/ws/streams/a?api_key=<redacted>"
