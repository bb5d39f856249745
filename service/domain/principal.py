"""Who is calling: the organisation comes only from the credential, never from a request body."""

from __future__ import annotations

from typing import Literal

import msgspec

Role = Literal["integration", "practitioner", "admin"]


class Principal(msgspec.Struct, frozen=True):
    organisation_id: str
    actor: str
    role: Role
    request_id: str | None = None
