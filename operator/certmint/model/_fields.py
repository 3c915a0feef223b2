"""Small readers for untrusted spec mappings: each checks one field's type and names
the field in its SpecError. The CRD schema already checks types, so these only fire for
objects stored before a schema change or handed in by tests and tools."""
from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from certmint.model.errors import SpecError

__all__ = ["DNS_SUBDOMAIN", "get_bool", "get_int", "get_map", "get_str", "get_str_list", "get_str_map"]

# A Kubernetes object name (RFC 1123 subdomain), as Secret and Certificate names must be.
DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer"}.get(
        type(value), type(value).__name__
    )


def get_map(obj: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise SpecError(f"{path} must be an object, not {_type_name(value)}")
    return value


def get_str(obj: Mapping[str, Any], key: str, path: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise SpecError(f"{path} must be a string, not {_type_name(value)}")
    return value


def get_bool(obj: Mapping[str, Any], key: str, path: str) -> bool | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise SpecError(f"{path} must be true or false, not {_type_name(value)}")
    return value


def get_int(obj: Mapping[str, Any], key: str, path: str) -> int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecError(f"{path} must be an integer, not {_type_name(value)}")
    return value


def get_str_list(obj: Mapping[str, Any], key: str, path: str) -> tuple[str, ...]:
    value = obj.get(key)
    if value is None:
        return ()
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise SpecError(f"{path} must be a list of strings, not {_type_name(value)}")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise SpecError(f"{path}[{index}] must be a string, not {_type_name(item)}")
    return tuple(value)


def get_str_map(obj: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
    value = get_map(obj, key, path)
    if value is None:
        return {}
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(v, str):
            raise SpecError(f"{path}[{k!r}] must be a string, not {_type_name(v)}")
        out[str(k)] = v
    return out
