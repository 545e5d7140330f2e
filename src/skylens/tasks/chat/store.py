"""Chat sessions held by a server between requests (``/api/chat``): ids, expiry, image files.

Each session gets an unguessable id and a private folder for the images uploaded into it (the
tasks read rasters by path, so uploads must outlive a request); a session idle for ``ttl_s``
seconds, or the oldest when ``max_sessions`` are open, is dropped with its folder.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from skylens.errors import NotFoundError
from skylens.tasks.chat.session import ChatSession

MAX_SESSIONS = 64
TTL_S = 1800.0  # half an hour idle
MAX_IMAGES = 4  # images one session may hold (two make a change pair)


@dataclass
class HeldSession:
    session: ChatSession
    folder: Path
    last_used: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)  # one turn at a time


class ChatSessions:
    """Open chat sessions by id (thread-safe)."""

    def __init__(self, max_sessions: int = MAX_SESSIONS, ttl_s: float = TTL_S) -> None:
        self.max_sessions, self.ttl_s = max_sessions, ttl_s
        self._held: OrderedDict[str, HeldSession] = OrderedDict()
        self._lock = threading.Lock()

    def create(self, **options) -> tuple[str, HeldSession]:
        """A new session (``ChatSession`` options) and its id."""
        held = HeldSession(ChatSession(**options), Path(tempfile.mkdtemp(prefix="skylens-chat-")))
        sid = secrets.token_urlsafe(16)
        with self._lock:
            self._expire()
            while len(self._held) >= self.max_sessions:
                self._drop(next(iter(self._held)))
            self._held[sid] = held
        return sid, held

    def get(self, sid: str) -> HeldSession:
        """The session ``sid``; ``NotFoundError`` when unknown or expired."""
        with self._lock:
            self._expire()
            held = self._held.get(sid)
            if held is None:
                raise NotFoundError(
                    f"chat session '{sid[:64]}' is unknown or expired; start a new one"
                )
            held.last_used = time.monotonic()
            self._held.move_to_end(sid)
            return held

    def __len__(self) -> int:
        return len(self._held)

    def _expire(self) -> None:
        now = time.monotonic()
        for sid in [s for s, h in self._held.items() if now - h.last_used > self.ttl_s]:
            self._drop(sid)

    def _drop(self, sid: str) -> None:
        held = self._held.pop(sid)
        shutil.rmtree(held.folder, ignore_errors=True)

    def close(self) -> None:
        with self._lock:
            for sid in list(self._held):
                self._drop(sid)
