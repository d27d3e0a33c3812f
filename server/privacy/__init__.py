"""Privacy: bounded retention of events, tickets and snapshots, and the log of who viewed evidence.

Imports tickets, ingest (snapshot storage) and the base; the API serves the access log.
"""
