"""A ``pumpguard up --demo --demo-ehr-port`` stack on its own event loop in a thread, as the
dashboard's browser and live-attack tests need it: the sync Playwright API, httpx and the
dashboard's own worker threads all talk to it over its real listeners."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from tests.server.runtime.support import config

from pumpguard.lab.ehr import DemoEhr, start_demo_ehr
from pumpguard.server.ehr_gateway import EhrSettings
from pumpguard.server.runtime import Stack
from pumpguard.web import add_dashboard

__all__ = ["RunningStack", "free_port"]

T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RunningStack:
    """``demo`` adds the ward; ``demo_ehr`` also the MLLP listener and the simulated EHR (an
    order every ``every_s``); ``live_attacks`` is ``StackConfig.live_attacks``."""

    def __init__(
        self,
        data_dir: Path,
        *,
        demo: bool = True,
        demo_ehr: bool = True,
        live_attacks: bool = True,
        every_s: float = 30.0,
    ) -> None:
        self._ehr_port = free_port() if demo_ehr else None
        ehr = (
            None
            if self._ehr_port is None
            else EhrSettings(ehr_endpoint=f"mllps://127.0.0.1:{self._ehr_port}")
        )
        self._config = config(
            data_dir,
            None,
            demo=demo,
            ehr=ehr,
            app_hooks=(add_dashboard,),
            live_attacks=live_attacks,
        )
        self._every_s = every_s
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.stack: Stack | None = None
        self.demo_ehr: DemoEhr | None = None
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            self.stack = await Stack.start(self._config)
            if self._ehr_port is not None:
                self.demo_ehr = await start_demo_ehr(
                    self.stack, self._ehr_port, every_s=self._every_s
                )
        except BaseException as exc:
            self._failure = exc
            self._ready.set()
            if self.stack is not None:
                await self.stack.stop()
            return
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await self.stack.stop()

    def start(self) -> Stack:
        self._thread.start()
        assert self._ready.wait(180), "the stack did not start within 180 s"
        if self._failure is not None:
            raise self._failure
        assert self.stack is not None
        return self.stack

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60.0) -> T:
        """Run ``coro`` on the stack's own loop and wait for its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(60)
