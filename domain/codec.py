"""Stores events as JSON through their pydantic models (after the library's aggregate7 example).

Upcasting happens here, after decoding and before validation, so that events stored by an
earlier class version load as the current class; the stored bytes (and their hash) stay as
they were written.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import orjson
from eventsourcing.persistence import Mapper, MapperDeserialisationError, StoredEvent, Transcoder
from eventsourcing.utils import TopicError, get_topic, resolve_topic
from pydantic import BaseModel, ValidationError

from .privacy import TOKEN_PREFIX, reveal_json

_IDENTITY = {"originator_id", "originator_version"}
_SEALED = b'"' + TOKEN_PREFIX.encode()
# A sealed token as orjson writes it: base64url parts only, so never an escape inside.
_TOKEN = re.compile(rb'"(' + re.escape(TOKEN_PREFIX.encode()) + rb'[A-Za-z0-9_-]*:[A-Za-z0-9_-]*)"')


class UnknownEvent(MapperDeserialisationError):
    """A stored event this code cannot read: its topic names no known event class, or its
    class version is newer than the class's (both written by a newer release)."""


class OrjsonTranscoder(Transcoder):
    def encode(self, obj: Any) -> bytes:
        return orjson.dumps(obj)

    def decode(self, data: bytes) -> Any:
        return orjson.loads(data)


class PydanticMapper(Mapper[Any]):
    # Set by the application when personal data is sealed (domain/privacy.py): decoded
    # events and snapshots carry the revealed values; the stored bytes keep the tokens.
    reveal: Callable[[str], str] | None = None

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        if hasattr(domain_event, "state_for_storage"):
            state = domain_event.state_for_storage()
        else:  # snapshots
            state = domain_event.model_dump(mode="json", exclude=_IDENTITY)
        data = self.transcoder.encode(state)
        if self.compressor:
            data = self.compressor.compress(data)
        if self.cipher:
            data = self.cipher.encrypt(data)
        return StoredEvent(
            originator_id=domain_event.originator_id,
            originator_version=domain_event.originator_version,
            topic=get_topic(type(domain_event)),
            state=data,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        if (
            self.reveal is not None
            and _SEALED in stored_event.state
            and not self.cipher
            and not self.compressor
        ):
            # Reveal on the bytes (one regex pass), not by walking the decoded state.
            raw = reveal_tokens(stored_event.state, self.reveal)
            stored_event = StoredEvent(
                originator_id=stored_event.originator_id,
                originator_version=stored_event.originator_version,
                topic=stored_event.topic,
                state=raw,
            )
        state = decode_state(self, stored_event)
        if self.reveal is not None and _SEALED in stored_event.state:
            state = reveal_json(state, self.reveal)
        try:
            cls: type[BaseModel] = resolve_topic(stored_event.topic)
        except TopicError as e:
            raise UnknownEvent(
                f"stored event of order {stored_event.originator_id} "
                f"v{stored_event.originator_version} has an unknown type "
                f"{stored_event.topic!r}"
            ) from e
        upcast(cls, state, stored_event)
        state["originator_id"] = stored_event.originator_id
        state["originator_version"] = stored_event.originator_version
        try:
            return cls.model_validate(state)
        except ValidationError as e:
            raise MapperDeserialisationError(
                f"stored event {stored_event.topic} of {stored_event.originator_id} "
                f"v{stored_event.originator_version} does not fit its class: {e}"
            ) from e


def reveal_tokens(data: bytes, reveal: Callable[[str], str]) -> bytes:
    """Stored bytes with every sealed token replaced by its revealed value, as a JSON
    string (one regex pass; a token written with an escape is left for `reveal_json`)."""
    return _TOKEN.sub(lambda m: orjson.dumps(reveal(m.group(1).decode())), data)


def decode_state(mapper: Mapper[Any], stored_event: StoredEvent) -> dict[str, Any]:
    """The JSON state of a stored event exactly as stored (no upcasting)."""
    data = stored_event.state
    try:
        if mapper.cipher:
            data = mapper.cipher.decrypt(data)
        if mapper.compressor:
            data = mapper.compressor.decompress(data)
        state: dict[str, Any] = mapper.transcoder.decode(data)
        return state
    except Exception as e:
        raise MapperDeserialisationError(
            f"cannot decode stored event {stored_event.topic} of "
            f"{stored_event.originator_id} v{stored_event.originator_version}: {e}"
        ) from e


def upcast(cls: type[Any], state: dict[str, Any], stored: StoredEvent | None = None) -> None:
    """Bring an event state from its stored class version to the class's current one."""
    target = getattr(cls, "class_version", 1)
    version = state.pop("class_version", 1)
    if version > target:  # never read a newer shape as an older one
        where = (
            f" of order {stored.originator_id} v{stored.originator_version}"
            if stored is not None
            else ""
        )
        raise UnknownEvent(
            f"stored event {getattr(stored, 'topic', cls.__name__)!r}{where} "
            f"is at class version {version}; this code knows up to {target}"
        )
    while version < target:
        getattr(cls, f"upcast_v{version}_v{version + 1}")(state)
        version += 1
