"""Token lifetimes are settings ([tokens] in fedgate.toml, FEDGATE_TOKENS_* in the environment), and bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.core.config import ConfigError, load_settings

ADMIN = {"FEDGATE_ADMIN_TOKEN": "a-very-random-admin-token"}


def test_token_lifetimes_are_settings(tmp_path: Path) -> None:
    defaults = load_settings(environ=ADMIN).tokens
    assert (defaults.default_lifetime_seconds, defaults.max_lifetime_seconds) == (90 * 86400, 730 * 86400)
    config = tmp_path / "fedgate.toml"
    config.write_text("[tokens]\ndefault_lifetime_seconds = 3600\nmax_lifetime_seconds = 86400\n")
    assert load_settings(config, environ=ADMIN).tokens.max_lifetime_seconds == 86400
    overridden = load_settings(config, environ={**ADMIN, "FEDGATE_TOKENS_MAX_LIFETIME_SECONDS": "7200"}).tokens
    assert (overridden.default_lifetime_seconds, overridden.max_lifetime_seconds) == (3600, 7200)
    # Every token expires, and the default is within the maximum.
    for env in ({"FEDGATE_TOKENS_MAX_LIFETIME_SECONDS": "0"}, {"FEDGATE_TOKENS_DEFAULT_LIFETIME_SECONDS": "-1"}):
        with pytest.raises(ConfigError, match="tokens"):
            load_settings(config, environ={**ADMIN, **env})
    with pytest.raises(ConfigError, match=r"tokens\.default_lifetime_seconds"):
        load_settings(config, environ={**ADMIN, "FEDGATE_TOKENS_DEFAULT_LIFETIME_SECONDS": "90000"})
