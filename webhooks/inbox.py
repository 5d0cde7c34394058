"""The inbox write and the enqueue that follows it: the hot path of every callback.

Store first, answer second (lessons.md, Receiving): a callback is acknowledged only once its row is
committed. The write goes through ``webhooks.inbox_writer``: rows that arrive together in a process are
committed by one statement (group commit), each request answered once its own row is committed.

The enqueue is best effort: when the broker is down the row stays ``received`` and the inbox sweeper
(beat) enqueues it later, so the sender still gets its 2xx. That is what lets it leave the request:
the request thread appends the event id to a list, and one publisher thread per process LPUSHes
whatever has accumulated in a single command. A broker round trip per callback, through kombu's
publish path (~0.6 ms of CPU per message), had halved the endpoint's throughput. The message is Celery's
own (see ``TaskPublisher``); tests check that it matches what ``.delay()`` sends and that a real worker
consumes it. Ids still in memory when a process dies are picked up by the same sweeper.
"""
from __future__ import annotations

import atexit
import base64
import json
import logging
import threading
import time
import uuid
from typing import Any, Mapping

import psycopg2
import redis
from sqlalchemy.engine import Engine

from core.redis_url import for_redis_py
from models.states import InboxState
from providers.values import clean_text
from webhooks.inbox_writer import InboxWriter, InvalidEvent, StorageUnavailable

__all__ = ["Inbox", "InvalidEvent", "StorageUnavailable", "TaskPublisher"]

log = logging.getLogger("exsync.webhooks.inbox")

PG_OPTIONS = {"connect_timeout": 3, "application_name": "exsync-inbox", "options": "-c statement_timeout=5000"}
BROKER_TIMEOUT = 2  # seconds, connect and each command
LINGER = 0.002  # seconds the publisher waits for more ids before an LPUSH (the worker sees them that late)


def _text(value: str | None) -> str | None:
    # Postgres text and jsonb refuse NUL and lone surrogates; a header carrying one is junk anyway.
    return clean_text(value) if value else value


class Inbox:
    """One per web app: one Postgres connection per process (the group writer), opened lazily."""

    def __init__(self, engine: Engine, redis_url: str | None) -> None:
        # psycopg2 arguments exactly as SQLAlchemy derives them from the URL (host, socket dir, password…).
        cargs, cparams = engine.dialect.create_connect_args(engine.url)
        args, params = tuple(cargs), {**cparams, **PG_OPTIONS}
        self.writer = InboxWriter(lambda: psycopg2.connect(*args, **params))
        self.redis_url = redis_url
        self._lock = threading.Lock()
        self._publisher: TaskPublisher | None = None

    def store(
        self,
        *,
        provider: str,
        endpoint: str,
        source_ip: str | None,
        headers: Mapping[str, str],
        content_type: str | None,
        body: bytes,
        payload: Mapping[str, Any] | None,
        state: str = InboxState.RECEIVED,
        last_error: str | None = None,
    ) -> int:
        """Commit one event; returns its id or raises ``StorageUnavailable`` (or ``InvalidEvent``)."""
        return self.writer.insert((
            provider, endpoint, _text(source_ip),
            json.dumps({_text(k): _text(v) for k, v in headers.items()}),
            _text(content_type), body,
            json.dumps(payload) if payload is not None else None,
            state, _text(last_error),
        ))

    def ping_database(self) -> None:
        self.writer.ping()

    @property
    def publisher(self) -> "TaskPublisher":
        if self._publisher is None:
            with self._lock:
                if self._publisher is None:
                    if not self.redis_url:
                        raise RuntimeError("no broker configured (EXSYNC_REDIS_URL)")
                    self._publisher = TaskPublisher(self.redis_url)
        return self._publisher

    def enqueue(self, event_id: int) -> None:
        """Hand the event to a worker, in the background; never raises."""
        if not self.redis_url:
            log.warning("inbox event %s stored, not enqueued: no broker configured", event_id)
            return
        try:
            self.publisher.publish(event_id)
        except Exception as exc:  # e.g. a routing the fast enqueue refuses: the sweeper still enqueues it
            log.error("inbox event %s stored, not enqueued (%s: %s)", event_id, type(exc).__name__, exc)

    def close(self) -> None:
        """Close the connections (while no request is being stored)."""
        self.writer.close()
        if self._publisher is not None:
            self._publisher.close()


class TaskPublisher:
    """Publishes ``worker.tasks.process_inbox_event(event_id)`` exactly as ``.delay(event_id)`` would.

    Routing comes from the Celery app's router, so a ``task_routes`` change is followed. Only a direct
    exchange is supported (Celery's default): Celery then publishes to the anonymous exchange with the
    queue's name as routing key, which the Redis transport turns into an LPUSH onto that queue.
    The message is Celery's own: one is built with ``app.amqp.as_task_v2`` at start, and each event
    only changes what differs per task (its id, its argument, the delivery tag).
    """

    def __init__(self, redis_url: str) -> None:
        from worker.celery_app import app
        from worker.tasks import process_inbox_event

        name = process_inbox_event.name
        route = app.amqp.router.route({}, name, (0,), {})
        queue = route["queue"]
        if queue.exchange.type != "direct" or route.get("exchange") or route.get("routing_key"):
            raise RuntimeError(f"{name}: only a plain queue on a direct exchange can be published to")
        if app.conf.task_serializer != "json":
            raise RuntimeError(f"{name}: the fast enqueue writes JSON messages only")
        self.queue = queue.name
        sample = app.amqp.as_task_v2("0", name, args=(0,), kwargs={}, reply_to=app.oid, ignore_result=True)
        self.headers = dict(sample.headers)
        self.body_tail = list(sample.body[1:])  # kwargs and the embed (callbacks, chain, chord…)
        self.properties = {**sample.properties, "delivery_mode": 2, "priority": 0, "body_encoding": "base64",
                           "delivery_info": {"exchange": "", "routing_key": queue.name}}
        self.pool = redis.ConnectionPool.from_url(
            for_redis_py(redis_url), socket_timeout=BROKER_TIMEOUT, socket_connect_timeout=BROKER_TIMEOUT)
        self._local = threading.local()
        self._pending: list[int] = []
        self._sending = 0  # ids taken by the publisher thread and not yet sent
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self.linger = LINGER
        # The message as one format string, built once from the same dicts with markers where each task's
        # values go (JSON-safe: a uuid, digits, base64): a message then costs a few µs, not ~17.
        marks = {"task": "@@exsync-task@@", "args": "@@exsync-args@@", "body": "@@exsync-body@@",
                 "tag": "@@exsync-tag@@"}
        headers = {**self.headers, "id": marks["task"], "root_id": marks["task"], "argsrepr": marks["args"]}
        properties = {**self.properties, "correlation_id": marks["task"], "delivery_tag": marks["tag"]}
        template = json.dumps({"body": marks["body"], "content-encoding": "utf-8", "content-type": "application/json",
                               "headers": headers, "properties": properties}).replace("%", "%%")
        for name, mark in marks.items():
            template = template.replace(mark, f"%({name})s")
        self._template = template
        self._body_rest = json.dumps(self.body_tail)[1:]  # "[kwargs, embed]" without its "[": follows the args

    def message(self, event_id: int) -> str:
        event_id = int(event_id)  # digits only: what argsrepr and the body carry
        body = f"[[{event_id}], {self._body_rest}".encode()
        return self._template % {"task": uuid.uuid4(), "args": f"({event_id},)", "tag": uuid.uuid4(),
                                 "body": base64.b64encode(body).decode("ascii")}

    def _call(self, *command: Any) -> Any:
        """One command on this thread's kept connection; one that died since its last use is reopened once."""
        for attempt in (1, 2):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = self.pool.make_connection()
            try:
                conn.send_command(*command)
                return conn.read_response()
            except (redis.ConnectionError, redis.TimeoutError, OSError):
                conn.disconnect()
                if attempt == 2:
                    raise
        return None  # pragma: no cover

    def publish(self, event_id: int) -> None:
        """Queue the message for the publisher thread (started on first use: after gunicorn's fork)."""
        with self._cv:
            self._pending.append(event_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="exsync-enqueue", daemon=True)
                self._thread.start()
                atexit.register(self.flush)
            if len(self._pending) == 1:  # the publisher waits only while nothing is pending
                self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                self._cv.wait_for(lambda: self._pending)
            # Let the ids of the requests in flight join this one: one wake-up and one LPUSH for many
            # (each costs the busy process far more CPU than its own few microseconds).
            time.sleep(self.linger)
            with self._cv:
                ids, self._pending = self._pending, []
                self._sending = len(ids)
            try:
                self._call("LPUSH", self.queue, *[self.message(i) for i in ids])
            except Exception as exc:  # the rows are committed: the inbox sweeper enqueues them later
                log.warning("%s inbox events stored, not enqueued (%s): the inbox sweeper will enqueue them",
                            len(ids), type(exc).__name__)
            with self._cv:
                self._sending = 0
                self._cv.notify_all()

    def flush(self, timeout: float = 2.0) -> bool:
        """Wait until every queued message went out (or failed); True when nothing is left."""
        with self._cv:
            return self._cv.wait_for(lambda: not self._pending and not self._sending, timeout)

    def ping(self) -> None:
        self._call("PING")

    def close(self) -> None:
        conn, self._local.conn = getattr(self._local, "conn", None), None
        if conn is not None:
            conn.disconnect()
