"""Telegram providers: "telegram_bot" (Bot API, free content to users who started the bot) and
"telegram_gateway" (Gateway API, verification codes to any phone number on Telegram).

Pick one per configuration table: `[providers.telegram_bot]`, `[providers.telegram_gateway]`, or
any table name with `type = "telegram_bot"` / `"telegram_gateway"`; then `[channels] telegram =
"<table name>"`. The settings of each are documented in its module (bot.py, gateway.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omnirelay.channels.base import Channel
from omnirelay.channels.http_upstream import ProviderFactory, create_provider
from omnirelay.channels.telegram.bot import PROVIDER as BOT
from omnirelay.channels.telegram.bot import TelegramBotChannel, TelegramBotSettings
from omnirelay.channels.telegram.gateway import PROVIDER as GATEWAY
from omnirelay.channels.telegram.gateway import TelegramGatewayChannel, TelegramGatewaySettings


def _bot(table: Mapping[str, Any], *, name: str, public_url: str) -> Channel:
    del public_url  # the bot's webhook is registered with setWebhook, outside the send path
    return TelegramBotChannel(TelegramBotSettings.from_mapping(table, name), name)


def _gateway(table: Mapping[str, Any], *, name: str, public_url: str) -> Channel:
    return TelegramGatewayChannel(
        TelegramGatewaySettings.from_mapping(table, name, public_url=public_url), name)


# Provider name -> factory.
PROVIDERS: dict[str, ProviderFactory] = {BOT: _bot, GATEWAY: _gateway}


def create_channel(settings: Mapping[str, Any], *, name: str | None = None,
                   public_url: str = "") -> Channel:
    """Build the Telegram provider that `settings["type"]` (else `name`, else "telegram_bot")
    names. `public_url` is the app's public base URL: the Gateway's default callback_url is
    <public_url>/webhooks/<name>/."""
    return create_provider(PROVIDERS, "Telegram", BOT, settings, name, public_url)


__all__ = ["PROVIDERS", "TelegramBotChannel", "TelegramBotSettings", "TelegramGatewayChannel",
           "TelegramGatewaySettings", "create_channel"]
