"""An in-process MQTT broker (amqtt) for the demo, tests and single-box installs.

Production sites run Mosquitto (``broker/mosquitto/``); this exists so ``gridwatch demo`` and
``gridwatch broker run`` work from ``pip install gridwatch[broker]`` alone, with no system package.
The broker runs in a background thread with its own asyncio loop so synchronous code (paho clients,
click commands, pytest) can start and stop it like any other resource.

amqtt is an optional extra, so it is imported only when a broker starts; importing this module
never needs it.

amqtt 0.12 quirks handled here, so the embedded broker behaves like the Mosquitto we deploy:

* Its ``AnonymousAuthPlugin`` marks sessions anonymous, and amqtt neither queues QoS 1 messages for
  an offline anonymous session nor keeps it after disconnect, which breaks the server's persistent
  (``clean_session=False``) subscription. ``PermitAllAuthPlugin`` admits every client without that
  mark, as Mosquitto's ``allow_anonymous true`` does.
* On every connect amqtt sends the new client, at QoS 0, the retained messages matching *any*
  client's subscriptions, before it has subscribed to anything; a subscriber then gets them twice.
  ``GridWatchBroker`` sends retained messages only in answer to that client's SUBSCRIBE.
* amqtt flags messages queued for an offline session ``retain=1`` when it delivers them on
  reconnect; ``GridWatchBroker`` sends them as ordinary messages (``retain=0``).
* amqtt forgets a QoS 1 message it sent but never got a PUBACK for (client gone, or PUBACK later
  than 5 s). ``GridWatchBroker`` keeps those and redelivers them when the persistent session
  resumes, so a server that dies before acknowledging gets the event again. A PUBACK that comes
  after amqtt's 5 s is ignored, so that message comes again at the next reconnect: a duplicate,
  which consumers must tolerate under QoS 1 anyway.
* The default plugin set adds $SYS publishing and packet/event loggers; we load only the auth
  plugin, so there is no topic checking and no noise.
* With port 0 the bound port is only known from the listening socket, read once started.
* amqtt speaks MQTT 3.1.1 only: paho clients must keep their default ``MQTTv311``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections import OrderedDict
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

_LISTENER = "default"
_NOISY_LOGGERS = ("amqtt", "transitions")
_PLUGIN_NAME = "PermitAllAuthPlugin"
_SUBACK_FAILURE = 0x80
# Private amqtt 0.12 methods GridWatchBroker overrides: checked so an amqtt upgrade fails loudly.
_OVERRIDDEN = (
    "_publish_retained_messages_for_subscription",
    "_publish_session_retained_messages",
    "_initialize_client_session",
    "_get_handler",
)
_classes: tuple[type, type] | None = None


class BrokerUnavailableError(RuntimeError):
    """The embedded broker cannot run: amqtt missing, port taken, or it did not come up in time."""


def _amqtt_classes() -> tuple[type, type]:
    """Build (once) our amqtt subclasses: (broker class, auth plugin class).

    Deferred to first use so that importing this module needs no amqtt. Raises
    BrokerUnavailableError with the install hint when the extra is missing.
    """
    global _classes
    if _classes is not None:
        return _classes
    try:
        from amqtt.broker import Broker
        from amqtt.plugins.base import BaseAuthPlugin
        from amqtt.session import Session
    except ImportError as exc:
        raise BrokerUnavailableError(
            f"the embedded MQTT broker needs amqtt: install gridwatch[broker] ({exc})"
        ) from exc

    class PermitAllAuthPlugin(BaseAuthPlugin):
        """Admit every client, keeping its session non-anonymous so QoS 1 queues persist."""

        async def authenticate(self, *, session: Session) -> bool:
            return True

    class GridWatchBroker(Broker):
        """amqtt's Broker with Mosquitto's retained and QoS 1 session behaviour (see the module docstring)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self._fresh_subscriptions: set[tuple[str, str]] = set()

        async def add_subscription(self, subscription: tuple[str, int], session: Session) -> int:
            code = await super().add_subscription(subscription, session)
            if session.client_id is not None and code != _SUBACK_FAILURE:
                self._fresh_subscriptions.add((session.client_id, subscription[0]))
            return code

        async def _publish_retained_messages_for_subscription(
            self, subscription: tuple[str, int], session: Session
        ) -> None:
            # amqtt also calls this on every connect for every filter any client holds, which sends
            # strangers' retained messages (at QoS 0, duplicated). Only a SUBSCRIBE gets them.
            key = (session.client_id or "", subscription[0])
            if key in self._fresh_subscriptions:
                self._fresh_subscriptions.discard(key)
                await super()._publish_retained_messages_for_subscription(subscription, session)

        async def _initialize_client_session(self, *args: Any, **kwargs: Any) -> tuple[Any, Session]:
            handler, session = await super()._initialize_client_session(*args, **kwargs)
            if not isinstance(session.inflight_out, _UnackedTracker):
                session.inflight_out = _UnackedTracker(session.inflight_out)
            return handler, session

        async def _publish_session_retained_messages(self, session: Session) -> None:
            # Runs when a persistent session resumes. First the QoS 1 messages amqtt gave up on
            # unacknowledged (client gone, or PUBACK later than 5 s), then those queued while it was
            # offline. amqtt would flag the queued ones retain=1 and forget the unacknowledged ones;
            # MQTT [MQTT-4.4.0-1] [MQTT-3.3.1-9] and Mosquitto redeliver both, with retain=0.
            handler = self._get_handler(session)
            if handler is None:
                return
            backlog = []
            if isinstance(session.inflight_out, _UnackedTracker):
                backlog += session.inflight_out.take_abandoned()
            while not session.retained_messages.empty():  # amqtt's offline queue, despite the name
                backlog.append(session.retained_messages.get_nowait())
            tasks = [asyncio.ensure_future(handler.mqtt_publish(m.topic, m.data, m.qos, retain=False))
                     for m in backlog]
            if tasks:
                await asyncio.wait(tasks)

    missing = [name for name in _OVERRIDDEN if not hasattr(Broker, name)]
    if missing:
        raise BrokerUnavailableError(
            f"this amqtt version lacks {', '.join(missing)}: the embedded broker supports amqtt 0.12"
        )
    PermitAllAuthPlugin.__module__ = GridWatchBroker.__module__ = __name__
    _classes = (GridWatchBroker, PermitAllAuthPlugin)
    return _classes


def __getattr__(name: str) -> Any:
    # amqtt loads plugins by dotted path (``gridwatch.broker.embedded.PermitAllAuthPlugin``);
    # resolve that name lazily (PEP 562) so the module imports without amqtt installed.
    if name == _PLUGIN_NAME:
        return _amqtt_classes()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _UnackedTracker(OrderedDict[int, Any]):
    """A session's ``inflight_out`` that remembers QoS 1 messages dropped without a PUBACK.

    amqtt removes a message from ``inflight_out`` when its delivery ends, acknowledged or not
    (cancelled by a disconnect, or timed out after 5 s); the ones without ``puback_packet`` are kept
    here, in the order they were sent, for redelivery when the persistent session resumes.
    """

    def __init__(self, items: Any = ()) -> None:
        self._sent_order: dict[int, int] = {}
        self._counter = itertools.count()
        self._abandoned: list[tuple[int, Any]] = []
        super().__init__(items)  # after the fields: it calls __setitem__ for each item

    def __setitem__(self, packet_id: int, message: Any) -> None:
        self._sent_order[packet_id] = next(self._counter)
        super().__setitem__(packet_id, message)

    def pop(self, packet_id: int, *default: Any) -> Any:
        message = super().pop(packet_id, *default)
        order = self._sent_order.pop(packet_id, -1)
        if message is not None and message.qos == 1 and getattr(message, "puback_packet", None) is None:
            self._abandoned.append((order, message))
        return message

    def take_abandoned(self) -> list[Any]:
        abandoned = [message for _, message in sorted(self._abandoned, key=lambda item: item[0])]
        self._abandoned.clear()
        return abandoned


def broker_config(host: str, port: int, session_expiry_s: int | None = None) -> dict[str, Any]:
    """amqtt 0.12 config: one TCP listener, everyone admitted, no topic checks, no $SYS, no websocket."""
    # amqtt splits "bind" at the last ':', so an IPv6 host goes in bare; brackets would break it.
    return {
        "listeners": {_LISTENER: {"type": "tcp", "bind": f"{host}:{port}", "max_connections": 0}},
        "session_expiry_interval": session_expiry_s,
        "plugins": {f"{__name__}.{_PLUGIN_NAME}": {}},
    }


class EmbeddedBroker:
    """An amqtt broker on ``host:port`` served from a private thread and event loop.

    ``port=0`` binds a free port; read it from ``port``/``url`` after ``start()``. Retained messages,
    last wills and QoS 1 with persistent sessions work as with Mosquitto, but nothing survives
    ``stop()``: sessions and retained messages live in memory only.

    ``log_level`` is applied to amqtt's loggers (which log every connection at INFO); pass ``None``
    to leave logging configuration alone.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        log_level: int | None = logging.WARNING,
        session_expiry_s: int | None = None,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0..65535, got {port}")
        self.host = host
        self._requested_port = port
        self._bound_host: str | None = None
        self._bound_port: int | None = None
        self._log_level = log_level
        self._session_expiry_s = session_expiry_s
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    # -- public API ---------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self._bound_port is not None

    @property
    def port(self) -> int:
        """The bound port (differs from the requested one when that was 0)."""
        if self._bound_port is None:
            raise RuntimeError("the broker is not started")
        return self._bound_port

    @property
    def url(self) -> str:
        """A URL for clients on this machine: the bound address, wildcards mapped to loopback.

        Taken from the listening socket because a name like ``localhost`` may bind IPv4 and IPv6,
        each on its own port when ``port=0``.
        """
        if self._bound_host is None:
            raise RuntimeError("the broker is not started")
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(self._bound_host, self._bound_host)
        host = f"[{host}]" if ":" in host else host
        return f"mqtt://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> EmbeddedBroker:
        """Start serving; return once the listener accepts connections.

        Raises BrokerUnavailableError if amqtt is missing, the port cannot be bound, or the broker
        is not up within ``timeout`` seconds.
        """
        if self._thread is not None:
            raise RuntimeError("the broker is already started")
        broker_class, _ = _amqtt_classes()
        if self._log_level is not None:
            for name in _NOISY_LOGGERS:
                logging.getLogger(name).setLevel(self._log_level)
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(
            target=self._run, args=(broker_class,), name=f"gridwatch-broker:{self._requested_port}",
            daemon=True,  # a forgotten stop() must not keep the interpreter alive
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise BrokerUnavailableError(
                f"embedded broker on {self.host}:{self._requested_port} did not start within {timeout}s"
            )
        if self._error is not None:
            error = self._error
            self._join(timeout)
            raise BrokerUnavailableError(
                f"embedded broker could not listen on {self.host}:{self._requested_port}: {error}"
            ) from error
        log.info("embedded MQTT broker listening on %s", self.url)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Disconnect clients, close the listener and join the thread. Safe to call twice."""
        thread, loop, stop_event = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and stop_event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed between the check and the call
                loop.call_soon_threadsafe(stop_event.set)
        self._join(timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._bound_port is not None else f"{self.host}:{self._requested_port}"
        return f"EmbeddedBroker({where}, running={self.running})"

    # -- the broker thread ----------------------------------------------------------------------

    def _join(self, timeout: float) -> None:
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                raise BrokerUnavailableError(f"embedded broker thread did not stop within {timeout}s")
        self._thread = None
        self._bound_host = self._bound_port = None

    def _run(self, broker_class: type) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(broker_class))
        except BaseException as exc:  # reported to start(); a thread has nobody else to tell
            self._error = exc
            if self._ready.is_set():
                log.exception("embedded MQTT broker stopped unexpectedly")
        finally:
            try:
                _cancel_remaining_tasks(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())  # getaddrinfo threads
            finally:
                loop.close()
                self._loop = None
                self._ready.set()  # never leave start() waiting on a broker that died

    async def _serve(self, broker_class: type) -> None:
        self._stop_event = asyncio.Event()
        broker = broker_class(
            broker_config(self.host, self._requested_port, self._session_expiry_s),
            loop=asyncio.get_running_loop(),
        )
        await broker.start()
        try:
            self._bound_host, self._bound_port = _bound_address(broker)
            self._ready.set()
            await self._stop_event.wait()
        finally:
            await broker.shutdown()


def _bound_address(broker: Any) -> tuple[str, int]:
    # amqtt has no public accessor for the listening socket; its Server wrapper keeps the
    # asyncio.Server as ``instance`` in the private ``_servers`` map.
    server = broker._servers[_LISTENER].instance
    host, port = server.sockets[0].getsockname()[:2]
    return str(host), int(port)


def _cancel_remaining_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel client handlers amqtt leaves behind after shutdown so the loop closes cleanly."""
    tasks = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
