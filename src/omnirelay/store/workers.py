"""The workers sharing one database: each beats a heartbeat, and whoever notices a stale one
retires it so that its leases can be released."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, delete, insert, select, update

from omnirelay.store.database import Database
from omnirelay.store.tables import workers


class Workers:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def heartbeat(self, worker_id: str, now: datetime, stale_before: datetime) -> list[str]:
        """Record that this worker is alive; return the workers whose heartbeat went stale."""
        def work(conn: Connection) -> list[str]:
            if not conn.execute(update(workers).where(workers.c.id == worker_id)
                                .values(heartbeat_at=now)).rowcount:
                conn.execute(insert(workers).values(id=worker_id, started_at=now,
                                                    heartbeat_at=now))
            dead = list(conn.execute(select(workers.c.id)
                                     .where(workers.c.heartbeat_at < stale_before)).scalars())
            if dead:
                conn.execute(delete(workers).where(workers.c.id.in_(dead)))
            return dead

        return await self.db.write(work)

    async def live_workers(self, since: datetime) -> list[tuple[str, datetime]]:
        """(worker id, last heartbeat) of the workers that beat at or after `since`."""
        def work(conn: Connection) -> list[tuple[str, datetime]]:
            rows = conn.execute(select(workers.c.id, workers.c.heartbeat_at)
                                .where(workers.c.heartbeat_at >= since)
                                .order_by(workers.c.heartbeat_at.desc()))
            return [(str(r[0]), r[1]) for r in rows]

        return await self.db.read(work)

    async def retire_worker(self, worker_id: str) -> None:
        def work(conn: Connection) -> None:
            conn.execute(delete(workers).where(workers.c.id == worker_id))

        await self.db.write(work)
