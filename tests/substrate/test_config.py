"""Configuration precedence: flags > environment > file > defaults, and `offerpool config`."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from substrate.config import load
from substrate.errors import InvalidRequest

pytestmark = pytest.mark.timeout(60)


def test_precedence_flag_env_file_default(tmp_path):
    cfg_file = tmp_path / "offerpool.toml"
    cfg_file.write_text('master = "file:1"\n[submit]\nmax_retries = 7\ncpus = 2\n'
                        '[agent]\nsandbox_keep = 60\n')
    env = {"OFFERPOOL_MASTER": "env:2", "OFFERPOOL_SUBMIT_MAX_RETRIES": "5"}
    cfg = load(flags={"master": "flag:3"}, env=env, path=str(cfg_file))
    assert (cfg["master"], cfg.source("master")) == ("flag:3", "flag")
    assert (cfg["submit.max_retries"], cfg.source("submit.max_retries")) == \
        (5, "env OFFERPOOL_SUBMIT_MAX_RETRIES")
    assert (cfg["submit.cpus"], cfg.source("submit.cpus")) == (2.0, f"file {cfg_file}")
    assert cfg["agent.sandbox_keep"] == 60.0
    assert (cfg["ship.host"], cfg.source("ship.host")) == ("127.0.0.1", "default")
    assert load(env=env, path=str(cfg_file))["master"] == "env:2"
    assert load(env={}, path=str(cfg_file))["master"] == "file:1"


def test_bad_files_and_values_name_what_is_wrong(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[submit]\nmax_retires = 1\n")
    with pytest.raises(InvalidRequest, match=r"bad.toml: unknown setting\(s\) submit.max_retires"):
        load(env={}, path=str(bad))
    bad.write_text("[submit]\nmax_retries = 'many'\n")
    with pytest.raises(InvalidRequest, match="submit.max_retries must be a int"):
        load(env={}, path=str(bad))
    bad.write_text("not toml [")
    with pytest.raises(InvalidRequest, match="not valid TOML"):
        load(env={}, path=str(bad))
    with pytest.raises(InvalidRequest, match="OFFERPOOL_SHIP_AUTO"):
        load(env={"OFFERPOOL_SHIP_AUTO": "perhaps"}, path="")


def test_offerpool_config_shows_values_and_sources(tmp_path):
    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text("[agent]\ngc_headroom = 0.25\n")
    env = dict(os.environ, OFFERPOOL_CONFIG=str(cfg_file), OFFERPOOL_STATE_DIR=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "substrate.cli", "config"], env=env,
                         capture_output=True, text=True, timeout=60, check=True).stdout
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "0.25" in lines["agent.gc_headroom"] and f"(file {cfg_file})" in lines["agent.gc_headroom"]
    assert "(env OFFERPOOL_STATE_DIR)" in lines["state_dir"]
    assert "(default)" in lines["submit.max_retries"]


def test_agent_flags_beat_environment_which_beats_the_file(tmp_path, monkeypatch):
    from substrate.agent import AgentConfig
    from substrate.cli import build_parser
    from substrate.submit.commands import agent_settings, agent_work_dir

    cfg_file = tmp_path / "c.toml"
    cfg_file.write_text('[agent]\nsandbox_keep = 10\ngc_headroom = 0.3\nwork_dir = "/from/file"\n')
    monkeypatch.setenv("OFFERPOOL_AGENT_GC_HEADROOM", "0.2")
    args = build_parser().parse_args(["agent", "--master", "h:1", "--config", str(cfg_file),
                                      "--sandbox-keep", "30"])
    config = AgentConfig(master="h:1")
    config.work_dir = agent_work_dir(args)
    agent_settings(args, config)
    assert config.work_dir == "/from/file"
    assert (config.sandbox_gc.keep_seconds, config.sandbox_gc.headroom) == (30.0, 0.2)
