"""Integrations: what leaves the server for other systems.

Ticket transitions published on MQTT, signed webhooks with retries, and the Open311 GeoReport v2
endpoint that city platforms speak. Imports tickets, registry and the base; the API mounts them.
"""
