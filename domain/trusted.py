"""`trusted(cls, **fields)`: a frozen value object or event of this package built from
values that were just validated by the same types, without validating them again (issue
21: one object graph per order on the way in).

It returns what `cls(**fields)` returns for such values: the same `__dict__` (every field,
in declaration order; a default for each field not given, a fresh one from its factory),
`model_fields_set` = the names given, then `model_post_init` (an event's dump and hash).
It costs about a fifth of pydantic's `model_construct` (which is pure Python and slower
than validating) and less than validation. Only for the package's models without extra
fields or private attributes (`extra="forbid"`: values.py, events.py), and only where the
caller says, in a comment, which validation of the same types the values just passed:
nothing is checked here (no field constraint, no validator, no conversion).
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
_new = object.__new__
_set = object.__setattr__
_NO_POST_INIT = BaseModel.model_post_init


class _Shape:
    """What `trusted` needs of a class: every field in declaration order with its default
    (PydanticUndefined: required, or made by its factory), the fields with a factory, the
    required ones, and whether it has a `model_post_init` of its own."""

    __slots__ = ("factories", "post_init", "required", "template")

    def __init__(self, cls: type[BaseModel]) -> None:
        if cls.model_config.get("extra") != "forbid" or cls.__private_attributes__:
            raise TypeError(f"{cls.__name__}: trusted() builds only models without extras")
        fields = cls.model_fields
        self.template = {name: field.default for name, field in fields.items()}
        self.factories = tuple(
            (name, field.default_factory)
            for name, field in fields.items()
            if field.default_factory is not None
        )
        self.required = tuple(name for name, field in fields.items() if field.is_required())
        self.post_init = cls.model_post_init is not _NO_POST_INIT


_SHAPES: dict[type[BaseModel], _Shape] = {}


def trusted(cls: type[M], **fields: Any) -> M:
    """`cls(**fields)` for values of the fields' types that were just validated (see the
    module's docstring): no validation, no conversion; a missing required field or an
    unknown one is a TypeError (a defect of the caller)."""
    shape = _SHAPES.get(cls)
    if shape is None:
        shape = _SHAPES[cls] = _Shape(cls)
    values = shape.template.copy()  # every field, in order: updating keeps the order
    values.update(fields)
    if len(values) != len(shape.template):
        unknown = ", ".join(sorted(fields.keys() - shape.template.keys()))
        raise TypeError(f"{cls.__name__}: no field {unknown}")
    for name in shape.required:
        if name not in fields:
            raise TypeError(f"{cls.__name__}: {name} is required")
    for name, factory in shape.factories:
        if name not in fields:
            values[name] = factory()  # type: ignore[call-arg]
    model = _new(cls)
    _set(model, "__dict__", values)
    _set(model, "__pydantic_extra__", None)
    _set(model, "__pydantic_fields_set__", set(fields))
    _set(model, "__pydantic_private__", None)
    if shape.post_init:
        model.model_post_init(None)
    return model
