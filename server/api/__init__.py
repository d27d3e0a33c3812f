"""The API: the HTTP face of the server, REST under ``/api``, live updates over SSE, the console at ``/``.

``app`` builds the application and its error handlers, ``auth`` and ``deps`` are the dependencies
every route uses (who is asking, a database session, paging), ``schemas`` the JSON shapes,
``live`` the SSE fan-out, and ``routers`` the routes, one module per resource. The top room of
the server: it may import every other server room, the base and the broker contract; nothing from
``gridwatch.edge``, and no other server room imports it.
"""
