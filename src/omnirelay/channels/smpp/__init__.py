"""SMS over SMPP 3.4: connectors to SMSCs, routing with failover, receipts and inbound messages."""

from omnirelay.channels.smpp.channel import SmppChannel, create_channel
from omnirelay.channels.smpp.settings import ConnectorSettings, Route, SmppSettings

__all__ = ["ConnectorSettings", "Route", "SmppChannel", "SmppSettings", "create_channel"]
