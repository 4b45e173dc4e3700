"""`omnirelay prices import/show` and `omnirelay account credit` as an operator runs them, with the
legacy endpoints of a gateway on the same database answering what they set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.processes import cli, create_account_cli, start_gateway, write_config


def failing(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "omnirelay.cli", *args, "--config",
                             str(config)], capture_output=True, text=True, timeout=60,
                            check=False, env={**os.environ})
    assert result.returncode != 0, result.stdout
    return result


def test_prices_import_credit_and_the_legacy_endpoints(tmp_path: Path) -> None:
    config = write_config(tmp_path / "omnirelay.toml", f"sqlite:///{tmp_path}/pricing.db")
    shop = create_account_cli(config, "shop")
    create_account_cli(config, "other")
    prices = tmp_path / "prices.csv"
    prices.write_text("Country,Code,MCCMNC,Network,Price\nEstonia,EE,24801,Telia,0.04\n")
    assert "imported 1 prices into the global" in cli(config, "prices", "import", str(prices))
    own = tmp_path / "own.csv"
    own.write_text("Country,Code,MCCMNC,Network,Price\nEstonia,EE,24801,Telia,0.02\n")
    assert "into the shop price list" in cli(config, "prices", "import", str(own),
                                             "--account", "shop")
    assert cli(config, "prices", "show", "shop").splitlines()[1] == "Estonia,EE,24801,Telia,0.02"
    assert cli(config, "prices", "show", "other").splitlines()[1] == \
        "Estonia,EE,24801,Telia,0.04"
    assert "balance 10.23" in cli(config, "account", "credit", "shop", "10.23")
    assert "balance 10.00" in cli(config, "account", "credit", "shop", "-0.23")

    bad = tmp_path / "bad.csv"
    bad.write_text("Country,Code,MCCMNC,Network,Price\nEstonia,EE,24801,Telia,lots\n")
    assert "line 2: Price" in failing(config, "prices", "import", str(bad)).stderr
    assert "no account" in failing(config, "prices", "import", str(own), "--account",
                                   "nobody").stderr.lower()
    assert "below zero" in failing(config, "account", "credit", "shop", "-11").stderr
    assert "more than six decimals" in failing(config, "account", "credit", "shop",
                                               "0.0000001").stderr

    process, base = start_gateway(config, tmp_path / "serve.log")
    try:
        auth = {"username": shop["api_username"], "password": shop["api_password"]}
        assert httpx.get(base + "/get_balance", params=auth).text == "OK 10.00"
        assert httpx.get(base + "/pricelist", params=auth).text.splitlines()[1] == \
            "Estonia,EE,24801,Telia,0.02"
    finally:
        process.terminate()
        process.wait(10)
    assert "unlimited" in cli(config, "account", "credit", "shop", "--unlimited")
