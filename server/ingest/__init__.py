"""Ingest: events from the broker into the database, at least once and never twice.

The ingest worker and its sources (MQTT, or AMQP on the clustered broker), storing a batch
(dedup, dead letters, tickets opened through the ticket engine), per-node sequence tracking,
snapshot and event clip storage, and the retained camera status board. Imports tickets, registry and the base
(settings, db, models); never the API.
"""
