"""One database plus the context its services share: what the HTTP API, the CLI and the
future MQTT ingest loop all open.

A transaction commits when the work succeeds *and* when a service refuses with a
``ServerError``: refusals record things (failed-login counters, lockouts, audit entries) that
must outlive the refusal. Any other exception is a bug and rolls everything back.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from pumpguard.server.context import ServerContext
from pumpguard.server.db import make_engine, make_session_factory, upgrade_database
from pumpguard.server.errors import ServerError

__all__ = ["Store"]


class Store:
    def __init__(self, engine: Engine, ctx: ServerContext) -> None:
        self.engine = engine
        self.ctx = ctx
        self._factory = make_session_factory(engine)

    @classmethod
    def open(cls, url: str, ctx: ServerContext, *, migrate: bool = True) -> Store:
        """Open ``url``; with ``migrate`` bring its schema to the newest revision first."""
        engine = make_engine(url)
        if migrate:
            upgrade_database(engine)
        return cls(engine, ctx)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        session = self._factory()
        try:
            yield session
        except ServerError:
            session.commit()
            raise
        except BaseException:
            session.rollback()
            raise
        else:
            session.commit()
        finally:
            session.close()

    def close(self) -> None:
        self.engine.dispose()
