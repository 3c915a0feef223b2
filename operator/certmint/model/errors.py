"""The one error the model raises."""
from __future__ import annotations

__all__ = ["SpecError"]


class SpecError(ValueError):
    """A Certificate or Issuer spec cannot be used. The message is meant for the user
    (it ends up in the object's Ready condition), and names the field at fault."""
