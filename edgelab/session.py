"""A lab session: the id every container and process of one lab run is labelled with."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field

SESSION_LABEL = "edgelab.session"
OWNER_PID_LABEL = "edgelab.pid"


@dataclass(frozen=True)
class Session:
    """Who owns what the lab starts, so that it can always be found and removed."""

    id: str = field(default_factory=lambda: secrets.token_hex(6))
    owner_pid: int = field(default_factory=os.getpid)

    @property
    def labels(self) -> dict[str, str]:
        return {SESSION_LABEL: self.id, OWNER_PID_LABEL: str(self.owner_pid)}
