"""`replace(model, **changes)`: what `model.model_copy(update=changes)` returns, for the
frozen value objects of this package (no extra fields, no private attributes), at about
a third of the cost of pydantic's generic copy (it runs several times per order on the
intake's hot path). Like `model_copy`, it does not validate the changes: callers pass
values of the fields' types.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
_new = object.__new__
_set = object.__setattr__


def replace(model: M, **changes: Any) -> M:
    if model.__pydantic_extra__ is not None or model.__pydantic_private__ is not None:
        return model.model_copy(update=changes)  # the general case, as pydantic does it
    copied = _new(type(model))
    values = model.__dict__.copy()
    values.update(changes)
    _set(copied, "__dict__", values)
    _set(copied, "__pydantic_extra__", None)
    _set(copied, "__pydantic_fields_set__", model.__pydantic_fields_set__.union(changes))
    _set(copied, "__pydantic_private__", None)
    return copied
