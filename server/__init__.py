"""The GridWatch server: MQTT events in, grid tickets (网格工单) out, over REST and a web console.

Heavy dependencies (FastAPI, SQLAlchemy, uvicorn) live behind the ``server`` extra, so nothing in
this package's ``__init__`` or ``cli`` imports them at module level.
"""
