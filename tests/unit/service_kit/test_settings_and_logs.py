from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from pydantic import ValidationError

from gpu_optimizer.settings import GpuOptSettings
from pose_analyzer.settings import PoseSettings
from service_kit.jsonlog import configure_logging
from service_kit.settings import config_digest


def test_settings_read_prefixed_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSE_PORT", "9123")
    monkeypatch.setenv("GPUOPT_SAMPLE_INTERVAL_S", "2.5")
    assert PoseSettings().port == 9123
    assert GpuOptSettings().sample_interval_s == 2.5


def test_settings_reject_bad_values_and_unknown_keys() -> None:
    with pytest.raises(ValidationError):
        PoseSettings(port=0)
    with pytest.raises(ValidationError):
        PoseSettings(backend="openpose")
    with pytest.raises(ValidationError):
        PoseSettings(no_such_setting=1)  # type: ignore[call-arg]


def test_config_digest_follows_effective_settings_and_hides_secrets() -> None:
    base = config_digest(PoseSettings(log_dir=None))
    assert base == config_digest(PoseSettings(log_dir=None))
    assert base != config_digest(PoseSettings(log_dir=None, port=9000))
    assert len(base) == 64
    with_key_a = config_digest(PoseSettings(log_dir=None, api_key="a"))
    with_key_b = config_digest(PoseSettings(log_dir=None, api_key="b"))
    assert with_key_a == with_key_b != base, "digest must not depend on the secret's value"


def test_json_logs_go_to_stdout_and_file_with_digest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("svc", "INFO", tmp_path, "d1g3st")
    try:
        logging.getLogger("svc.test").info("hello %s", "world", extra={"stream": "cam1"})
        for handler in logging.getLogger().handlers:
            handler.flush()
        line = capsys.readouterr().out.strip().splitlines()[-1]
        event = json.loads(line)
        assert event["msg"] == "hello world"
        assert event["stream"] == "cam1"
        assert event["config_digest"] == "d1g3st"
        assert event["service"] == "svc"
        file_event = json.loads((tmp_path / "svc.log").read_text().strip().splitlines()[-1])
        assert file_event["msg"] == "hello world"
    finally:
        root = logging.getLogger()
        for handler in [h for h in root.handlers if getattr(h, "_service_kit", False)]:
            root.removeHandler(handler)
            handler.close()
