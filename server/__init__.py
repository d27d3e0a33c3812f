"""The GridWatch server: MQTT events in, grid tickets (网格工单) out, over REST and a web console.

The folders are rooms by concern, lowest first; a room imports the ones before it, never one after
(tests/test_architecture.py checks):

- the root's base: ``settings``, ``db`` and ``models`` (the database schema, one file as the
  migrations under ``migrations/`` mirror it), ``clock``, ``periodic``.
- ``registry/``: grids, people, units, camera bindings, accounts, camera zones.
- ``tickets/``: stages, lifecycle, categories and calendar, SLA, correlation, indicators.
- ``ingest/``: broker sources, the ingest worker, sequence gaps, snapshot storage, camera status.
- ``integrations/`` (MQTT transitions, webhooks, Open311) and ``privacy/`` (retention, evidence access log).
- ``api/``: the FastAPI application and its routers; ``console/`` holds the web console it serves.
- the root's entry points: ``cli`` (``gridwatch server``) and ``runner`` (uvicorn in a thread).

Heavy dependencies (FastAPI, SQLAlchemy, uvicorn) live behind the ``server`` extra, so nothing in
this package's ``__init__`` or ``cli`` imports them at module level. The server never imports
``gridwatch.edge``.
"""
