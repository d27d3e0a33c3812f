"""Privacy: bounded retention of events, tickets and snapshots, the log of who viewed evidence, and the
site's blur policy that every snapshot upload passes before it is stored.

Imports tickets, ingest (snapshot storage) and the base; the API serves the access log.
"""
