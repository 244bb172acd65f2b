"""What `fedgate serve` prints when it cannot use its database URL: never a piece of the password in it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ADMIN_TOKEN = "start-up-secrets-" + "x" * 32
PASSWORD = "Zq9Kw2S3cretPW"  # made up


@pytest.mark.parametrize(
    "url",
    [
        # A generated password holding `/`, `#` or `?` cuts the URL's authority there: the parser took its first
        # part for a port and said so, printing it ("invalid literal for int() with base 10: 'Zq9Kw2'").
        f"postgresql://fedgate:{PASSWORD[:6]}/{PASSWORD[6:]}@db.internal:5432/fedgate",
        f"postgresql://fedgate:{PASSWORD}/@db.internal/fedgate",
        f"postgresql://fedgate:{PASSWORD[:6]}#{PASSWORD[6:]}@db.internal:5432/fedgate",
        f"postgresql://fedgate:{PASSWORD[:6]}?{PASSWORD[6:]}@db.internal:5432/fedgate",
        f"postgresql://fedgate:{PASSWORD}@[db.internal/fedgate",
        f"postgresql://fedgate:{PASSWORD}@db.internal/fedgate?sslmode={PASSWORD}",
    ],
)
def test_an_unreadable_database_url_stops_start_up_without_quoting_it(url: str) -> None:
    env = {
        **os.environ,
        "FEDGATE_DATABASE_URL": url,
        "FEDGATE_DATABASE_CONNECT_TIMEOUT_SECONDS": "1",
        "FEDGATE_ADMIN_TOKEN": ADMIN_TOKEN,
    }
    env.pop("FEDGATE_CONFIG", None)
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 2, output[-2000:]
    assert "database.url: it is not a URL the gateway can read" in done.stderr, output[-2000:]
    for piece in (PASSWORD[:6], PASSWORD[6:], "S3cret"):
        assert piece not in output, output[-2000:]
