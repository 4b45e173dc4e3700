"""`omnirelay prices import/show` and `omnirelay account credit` as an operator runs them."""

from __future__ import annotations

from pathlib import Path

from tests.cli.runner import cli, create_account_cli
from tests.cli.runner import cli_fails as failing
from tests.processes import write_config


def test_prices_import_show_and_account_credit(tmp_path: Path) -> None:
    config = write_config(tmp_path / "omnirelay.toml", f"sqlite:///{tmp_path}/pricing.db")
    create_account_cli(config, "shop")
    prices = tmp_path / "prices.csv"
    prices.write_text("Country,Code,MCCMNC,Network,Price\nEstonia,EE,24801,Telia,0.04\n"
                      "Finland,FI,,,0.05\n")
    assert "imported 2 prices into the global" in cli(config, "prices", "import", str(prices))
    own = tmp_path / "own.csv"
    own.write_text("Country,Code,MCCMNC,Network,Price\nEstonia,EE,24801,Telia,0.02\n")
    assert "into the shop price list" in cli(config, "prices", "import", str(own),
                                             "--account", "shop")
    # the account's own Estonian price over the global one; Finland from the global list
    assert cli(config, "prices", "show", "shop").splitlines() == [
        "Country,Code,MCCMNC,Network,Price", "Estonia,EE,24801,Telia,0.02", "Finland,FI,,,0.05"]
    assert "balance 10.23" in cli(config, "account", "credit", "shop", "10.23")
    assert "balance 10.00" in cli(config, "account", "credit", "shop", "0.23", "--debit")

    bad = tmp_path / "bad.csv"
    bad.write_text("Country,Code,MCCMNC,Network,Price\nEstonia,EE,24801,Telia,lots\n")
    assert "line 2: Price" in failing(config, "prices", "import", str(bad)).stderr
    assert "below zero" in failing(config, "account", "credit", "shop", "11", "--debit").stderr
    assert "unlimited" in cli(config, "account", "credit", "shop", "--unlimited")
