"""Multi-turn chat over images, an index and a knowledge base, routed to expert tasks.

- ``router``: rules + sentence similarity to each expert's example requests (RS-MoE's gate).
- ``experts``: one adapter per existing task (caption, scene, vqa, search, localize, change,
  knowledge); none reimplements a task.
- ``session``: ``ChatSession.ask(turn) -> TurnResult`` with images, history and referents.
"""

from skylens.tasks.chat.router import EXPERTS, Route, Router
from skylens.tasks.chat.session import ChatSession, TurnResult

__all__ = ["EXPERTS", "ChatSession", "Route", "Router", "TurnResult"]
