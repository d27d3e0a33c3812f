"""The API's routes, one module per resource (FastAPI's "bigger applications" layout), each with
a ``router`` that :func:`gridwatch.server.api.app.create_app` includes.

Routes take their database session and caller from the dependencies in ``api.deps`` and
``api.auth`` and reach what the app made (settings, snapshot store, broadcaster, clock) through
``request.app.state``. May import the rest of the API (auth, deps, schemas, live), every other
server room and the broker contract; nothing from ``gridwatch.edge``. Nothing but ``api.app``
imports a router.
"""
