"""TMF641 v4.1 ServiceOrder bodies for hypothesis, DERIVED from TM Forum's v4.1.0 swagger, and
the comparator of the lossless round-trip tests (issue 19, acceptance 1).

The generator walks the swagger's `definitions` from `ServiceOrder_Create` (or
`ServiceOrder_Update`): every attribute a definition lists is drawn, the required ones
always, each optional one present or absent; arrays hold 0..2 elements (at least `minItems`);
`serviceOrderItem` nests to depth 3; `Characteristic.value` (`Any`) is any JSON value;
objects get extension attributes (keys no definition of the swagger uses, JSON values).
Nothing lists the attributes by hand. What the engine needs for an order it accepts is
layered on top, by (definition, attribute) where the swagger leaves it open:

* item ids unique across the whole order (nested items included); `quantity` within the
  engine's 1..100000;
* `service.serviceSpecification.id` a specification of the default catalog and its required
  characteristics with allowed values (further characteristics, of every JSON value type,
  under names of their own: the catalog flags them, it does not refuse them);
  `service.id` when the action is not `add`;
* an item relationship names an item generated before it (dependencies stay acyclic);
* strings without NUL and short; date-times RFC 3339 with a timezone (`Z` or an offset),
  microseconds at most; integers within +-(2^53-1), floats finite.

The attributes the engine refuses (REFUSED_ON_CREATE / REFUSED_ON_PATCH of
serviceorders.tmf.tmf641_in) are left out unless `include_refused=True`, which also draws the
server-owned attributes of `ServiceOrder` that `ServiceOrder_Create` lacks (`id`, `state`,
...): such a body must be refused (400) naming them.

`assert_kept(sent, got, server_added)`: every attribute sent is in `got` with an equal value
(date-times compared as instants, a date alone as that day's midnight UTC; numbers as
docs/lifecycle.md says, "kept by value": an integral double of 1e16 or more may come back as
that integer, no other number changes its JSON type; nested items
matched under their parent by id; other arrays element by element, in order; an empty array
sent may be absent), and every attribute `got` has beyond those is on the `server_added` list.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from hypothesis import strategies as st
from serviceorders.domain.catalog import Catalog, ServiceSpecification, ValueType
from serviceorders.domain.privacy import TOKEN_PREFIX

SWAGGER_PATH = (
    Path(__file__).resolve().parents[1]
    / "api"
    / "tmf641"
    / "TMF641-ServiceOrdering-v4.1.0.swagger.json"
)
SWAGGER: dict[str, Any] = json.loads(SWAGGER_PATH.read_text(encoding="utf-8"))
DEFS: dict[str, dict[str, Any]] = SWAGGER["definitions"]

# Every attribute name any definition of the swagger uses: extension keys avoid them all.
ALL_NAMES: frozenset[str] = frozenset(
    name for d in DEFS.values() for name in (d.get("properties") or {})
)
ITEM = "ServiceOrderItem"
MAX_ITEM_DEPTH = 3  # serviceOrderItem within serviceOrderItem within serviceOrderItem
MAX_LEVEL = 7  # object nesting below an item's service beyond which only required attributes
MAX_SAFE_INT = 2**53 - 1
CATALOG = Catalog.default()


def ref_name(schema: dict[str, Any]) -> str | None:
    ref = schema.get("$ref")
    return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def properties(definition: str) -> dict[str, dict[str, Any]]:
    return dict(DEFS[definition].get("properties") or {})


def required(definition: str) -> set[str]:
    """The required attributes a definition lists among its properties (ServiceOrderItemRef
    requires an `id` it does not define: its reference is `itemId`, taken as such)."""
    d = DEFS[definition]
    return set(d.get("required") or ()) & set(d.get("properties") or {})


def documented() -> tuple[
    dict[str, tuple[str, ...]], dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]
]:
    """(server-added, refused on create, refused on patch), each by definition name, as the
    engine documents them (docs/lifecycle.md): serviceorders.tmf.tmf641.SERVER_ADDED,
    serviceorders.tmf.tmf641_in.REFUSED_ON_CREATE / REFUSED_ON_ITEM / REFUSED_ON_PATCH."""
    from serviceorders.tmf import tmf641, tmf641_in

    added = {name: tuple(names) for name, names in tmf641.SERVER_ADDED.items()}
    if "Service" in added:  # the swagger's definition of an item's service
        added["ServiceRefOrValue"] = added["Service"]
    on_item = tuple(tmf641_in.REFUSED_ON_ITEM)
    create = {"ServiceOrder_Create": tuple(tmf641_in.REFUSED_ON_CREATE), ITEM: on_item}
    patch = {"ServiceOrder_Update": tuple(tmf641_in.REFUSED_ON_PATCH), ITEM: on_item}
    return added, create, patch


def dotted(path: Iterable[Any]) -> str:
    """`serviceOrderItem.0.serviceOrderItem.1.state` -> `serviceOrderItem.state`: the
    attribute path without indexes (nor `[id=...]` steps), nested items folded into one
    `serviceOrderItem`."""
    names: list[str] = []
    for step in path:
        if isinstance(step, int) or str(step).startswith("["):
            continue
        if step == "serviceOrderItem" and names and names[-1] == "serviceOrderItem":
            continue
        names.append(str(step))
    return ".".join(names)


# ------------------------------------------------------------------------ values
TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_characters="\x00", exclude_categories=["Cs"]),
    min_size=1,
    max_size=12,
)
WORDS = st.sampled_from(["a", "Acme", "site B", "été", "日本", "😀 x", "1", "O'Brien", "a\nb"])
# A text starting with the prefix sealed personal data is stored under is refused at every
# door (domain/privacy.py TOKEN_PREFIX, invalid_command): a rule on values, left out here.
STRING = (TEXT | WORDS).filter(lambda text: not text.startswith(TOKEN_PREFIX))
SAFE_INT = st.integers(min_value=-MAX_SAFE_INT, max_value=MAX_SAFE_INT)
FLOAT = st.floats(allow_nan=False, allow_infinity=False)
JSON_LEAF = st.none() | st.booleans() | SAFE_INT | FLOAT | STRING
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(STRING, inner, max_size=3),
    max_leaves=6,
)
OFFSETS = st.sampled_from(
    [UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5, minutes=-30))]
)


@st.composite
def rfc3339(draw: st.DrawFn) -> str:
    moment = draw(
        st.datetimes(
            min_value=datetime(2000, 1, 1), max_value=datetime(2099, 12, 31), timezones=OFFSETS
        )
    )
    if draw(st.booleans()):
        moment = moment.replace(microsecond=0)
    text = moment.isoformat()
    return text.replace("+00:00", "Z") if draw(st.booleans()) else text


URI = st.builds(
    "https://example.com/{}/{}".format,
    st.sampled_from(["tmf-api", "schema", "x"]),
    st.from_regex(r"[A-Za-z0-9_-]{1,8}", fullmatch=True),
)


def characteristic_value(vtype: ValueType) -> st.SearchStrategy[Any]:
    """A value of a catalog characteristic's type (without allowed values or bounds)."""
    return {
        ValueType.STRING: STRING,
        ValueType.INTEGER: SAFE_INT,
        ValueType.NUMBER: FLOAT,
        ValueType.BOOLEAN: st.booleans(),
        ValueType.DATE: st.dates(min_value=date(2000, 1, 1)).map(date.isoformat),
        ValueType.DATETIME: rfc3339(),
    }[vtype]


# ------------------------------------------------------------------------ the walker
@dataclass
class Options:
    include_refused: bool = False
    refused: dict[str, tuple[str, ...]] = field(default_factory=dict)  # by definition
    server_owned: tuple[str, ...] = ()  # order-level names drawn when include_refused
    extensions: bool = True
    max_items: int = 6
    echoes: dict[str, Collection[Any]] = field(default_factory=dict)  # values a refused one avoids


@dataclass
class Walk:
    draw: st.DrawFn
    options: Options
    ids: list[str] = field(default_factory=list)  # item ids so far, in generation order
    refused_sent: list[str] = field(default_factory=list)  # dotted paths of refused attributes
    taken: frozenset[str] = frozenset()  # item ids the order already has (PATCH)

    # ------------------------------------------------------------ generic
    def value(self, schema: dict[str, Any], path: tuple[Any, ...], level: int) -> Any:
        name = ref_name(schema)
        if name is not None:
            return self.definition(name, path, level)
        if "enum" in schema:
            return self.draw(st.sampled_from(schema["enum"]))
        kind = schema.get("type")
        if kind == "array":
            low = schema.get("minItems", 0)
            count = self.draw(st.integers(min_value=low, max_value=max(low, 2)))
            return [self.value(schema["items"], (*path, i), level + 1) for i in range(count)]
        if kind == "string":
            fmt = schema.get("format")
            if fmt == "date-time":
                return self.draw(rfc3339())
            if fmt == "uri":
                return self.draw(URI)
            return self.draw(STRING)
        if kind == "integer":
            return self.draw(SAFE_INT)
        if kind == "number":
            return self.draw(FLOAT)
        if kind == "boolean":
            return self.draw(st.booleans())
        return self.draw(JSON_VALUE)  # `Any` and untyped schemas

    def definition(self, name: str, path: tuple[Any, ...], level: int) -> Any:
        d = DEFS[name]
        if "enum" in d:
            return self.draw(st.sampled_from(d["enum"]))
        if d.get("type") not in (None, "object") or not d.get("properties"):
            return self.draw(JSON_VALUE)  # `Any`
        if name == ITEM:
            return self.item(path, level)
        return self.object(name, path, level)

    def object(
        self,
        name: str,
        path: tuple[Any, ...],
        level: int,
        fixed: dict[str, Any] | None = None,
        skip: Collection[str] = (),
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        needed = required(name)
        for prop, schema in properties(name).items():
            at = (*path, prop)
            if fixed and prop in fixed:
                if fixed[prop] is not _ABSENT:
                    out[prop] = fixed[prop]
                continue
            if prop in skip:
                continue
            if prop in self.options.refused.get(name, ()):
                if self.options.include_refused and self.draw(st.booleans()):
                    out[prop] = self.refused_value(prop, schema, at, level + 1)
                    self.refused_sent.append(dotted(at))
                continue
            if prop not in needed and (level >= MAX_LEVEL or not self.draw(st.booleans())):
                continue
            out[prop] = self.value(schema, at, level + 1)
        self.extend(out)
        return out

    def refused_value(
        self, prop: str, schema: dict[str, Any], path: tuple[Any, ...], level: int
    ) -> Any:
        """A value for a refused attribute that cannot be an echo of the order's own (a
        patch may repeat an item's `state` / `errorMessage` as GET shows them): not among
        `Options.echoes[prop]`, and an array not empty (an empty one counts as absent)."""
        avoid = self.options.echoes.get(prop, ())
        while True:
            value = self.value(schema, path, level)
            if value in avoid or value == [] or value is None:
                if schema.get("type") == "array":
                    value = [self.value(schema["items"], (*path, 0), level + 1)]
                else:
                    continue
            return value

    def extend(self, out: dict[str, Any]) -> None:
        """Extension attributes: keys no definition uses, JSON values."""
        if not self.options.extensions:
            return
        extra = self.draw(
            st.dictionaries(
                STRING.filter(lambda k: k not in ALL_NAMES and not k.startswith("@")),
                JSON_VALUE,
                max_size=2,
            )
        )
        for key, value in extra.items():
            out.setdefault(key, value)

    # ------------------------------------------------------------ the order's items
    def items(self, path: tuple[Any, ...], level: int, depth: int, low: int) -> list[Any]:
        room = self.options.max_items - len(self.ids)
        high = min(2, room)
        if high < low:
            return []
        count = self.draw(st.integers(min_value=low, max_value=high))
        return [self.item((*path, i), level + 1, depth) for i in range(count)]

    def item(
        self, path: tuple[Any, ...], level: int, depth: int = 1, item_id: str | None = None
    ) -> dict[str, Any]:
        level = 2  # every item's attributes as rich as a top-level one's
        item_id = item_id or self.new_id()
        action = self.draw(st.sampled_from(DEFS["OrderItemActionType"]["enum"]))
        before = [i for i in self.ids if i != item_id]
        fixed: dict[str, Any] = {
            "id": item_id,
            "action": action,
            "quantity": (
                self.draw(st.integers(min_value=1, max_value=100000))
                if self.draw(st.booleans())
                else _ABSENT
            ),
            "service": self.service((*path, "service"), level + 1, action),
            "serviceOrderItemRelationship": self.relationships(
                (*path, "serviceOrderItemRelationship"), level + 1, before
            ),
            "serviceOrderItem": _ABSENT,
        }
        out = self.object(ITEM, path, level, fixed)
        if depth < MAX_ITEM_DEPTH and self.draw(st.booleans()):
            nested = self.items((*path, "serviceOrderItem"), level, depth + 1, low=0)
            if nested:
                out["serviceOrderItem"] = nested
        return out

    def new_id(self) -> str:
        while True:
            candidate = self.draw(
                st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,6}", fullmatch=True)
                | st.integers(min_value=1, max_value=999).map(str)
            )
            if candidate not in self.ids and candidate not in self.taken:
                self.ids.append(candidate)
                return candidate

    def relationships(self, path: tuple[Any, ...], level: int, before: list[str]) -> Any:
        if not before or not self.draw(st.booleans()):
            return _ABSENT
        count = self.draw(st.integers(min_value=1, max_value=2))
        out = []
        for i in range(count):
            at = (*path, i)
            rel = self.object("ServiceOrderItemRelationship", at, level, skip=("orderItem",))
            rel["relationshipType"] = self.draw(
                st.sampled_from(["dependency", "dependsOn", "bundled", "reliesOn"]) | STRING
            )
            ref = self.object(
                "ServiceOrderItemRef",
                (*at, "orderItem"),
                level + 1,
                {"itemId": self.draw(st.sampled_from(before))},
            )
            rel["orderItem"] = ref
            out.append(rel)
        return out

    def service(self, path: tuple[Any, ...], level: int, action: str) -> dict[str, Any]:
        spec = self.draw(st.sampled_from(CATALOG.specifications))
        fixed: dict[str, Any] = {
            "serviceSpecification": self.specification(
                (*path, "serviceSpecification"), level + 1, spec
            ),
            "serviceCharacteristic": self.characteristics(
                (*path, "serviceCharacteristic"), level + 1, spec, action
            ),
        }
        if action != "add":
            fixed["id"] = self.draw(STRING)
        return self.object("ServiceRefOrValue", path, level, fixed)

    def specification(
        self, path: tuple[Any, ...], level: int, spec: ServiceSpecification
    ) -> dict[str, Any]:
        return self.object("ServiceSpecificationRef", path, level, {"id": spec.id})

    def characteristics(
        self, path: tuple[Any, ...], level: int, spec: ServiceSpecification, action: str
    ) -> list[dict[str, Any]]:
        values: dict[str, Any] = {}
        for char in spec.characteristics:
            if (char.required and action == "add") or self.draw(st.booleans()):
                if char.allowed_values:
                    values[char.name] = self.draw(st.sampled_from(char.allowed_values))
                elif char.minimum is not None or char.maximum is not None:
                    values[char.name] = self.draw(
                        st.integers(
                            min_value=int(char.minimum or 0),
                            max_value=int(char.maximum or MAX_SAFE_INT),
                        )
                    )
                else:
                    values[char.name] = self.draw(characteristic_value(char.value_type))
        # Characteristics the specification does not know, of every JSON value type:
        # flagged for the reviewer, kept.
        others = self.draw(
            st.dictionaries(
                STRING.filter(lambda n: spec.characteristic(n) is None), JSON_VALUE, max_size=3
            )
        )
        values.update(others)
        out = []
        for i, (name, value) in enumerate(values.items()):
            out.append(
                self.object("Characteristic", (*path, i), level, {"name": name, "value": value})
            )
        return out


class _Absent:
    def __repr__(self) -> str:
        return "ABSENT"


_ABSENT: Any = _Absent()


# ------------------------------------------------------------------ the strategies
@dataclass(frozen=True)
class Generated:
    """A generated body and the refused attributes it carries (dotted paths)."""

    body: dict[str, Any]
    refused: tuple[str, ...]


def _options(include_refused: bool, refused: Mapping[str, Collection[str]], top: str) -> Options:
    """`top`'s refused attributes, and those of the resource (`ServiceOrder`) it lacks."""
    own = set(refused.get(top, ()))
    owned = tuple(sorted((set(properties("ServiceOrder")) - set(properties(top))) & own))
    return Options(
        include_refused=include_refused,
        refused={k: tuple(v) for k, v in refused.items()},
        server_owned=owned,
    )


@st.composite
def create_bodies(
    draw: st.DrawFn,
    *,
    refused: Mapping[str, Collection[str]],
    include_refused: bool = False,
    external_id: str | None = None,
    max_items: int = 6,
) -> Generated:
    """A `ServiceOrder_Create` body (a `Generated`): every attribute of the swagger drawn
    present or absent; `refused` (attribute names by definition, as `documented()` gives
    them) left out unless `include_refused`."""
    options = _options(include_refused, refused, "ServiceOrder_Create")
    options.max_items = max_items
    walk = Walk(draw, options)
    fixed: dict[str, Any] = {}
    if external_id is not None:
        fixed["externalId"] = external_id
    top = ("serviceOrderItem",)
    fixed["serviceOrderItem"] = walk.items(top, 1, 1, low=1)
    body = walk.object("ServiceOrder_Create", (), 0, fixed)
    if include_refused:
        for name in options.server_owned:
            if draw(st.booleans()):
                body[name] = walk.refused_value(name, properties("ServiceOrder")[name], (name,), 1)
                walk.refused_sent.append(name)
    return Generated(body, tuple(walk.refused_sent))


@st.composite
def update_bodies(
    draw: st.DrawFn,
    *,
    current: dict[str, Any],
    refused: Mapping[str, Collection[str]],
    include_refused: bool = False,
    max_items: int = 3,
    echoes: Mapping[str, Collection[Any]] | None = None,
) -> Generated:
    """A `ServiceOrder_Update` body for the order `current` (its TMF641 document as sent):
    items replacing its top-level items without nested ones (by id) or new ones, each
    complete and valid; `state` and `externalId`, when drawn, repeat the current value;
    extension attributes, some `null` (removing one the order has). Refused attributes
    (with `include_refused`) avoid `echoes` (by name: the values GET shows for the order's
    items, which a patch may repeat)."""
    options = _options(include_refused, refused, "ServiceOrder_Update")
    options.echoes = dict(echoes or {})
    options.max_items = max_items
    existing = _item_ids(current.get("serviceOrderItem") or [])
    walk = Walk(draw, options, taken=frozenset(existing))
    replaceable = [
        i["id"] for i in current.get("serviceOrderItem") or [] if not i.get("serviceOrderItem")
    ]
    fixed: dict[str, Any] = {}
    for name in ("state", "externalId"):  # PATCH_SAME_VALUE_ONLY: the current value or none
        if name not in options.refused.get("ServiceOrder_Update", ()):
            same = name in current and draw(st.booleans())
            fixed[name] = current[name] if same else _ABSENT
    items: list[dict[str, Any]] = []
    if draw(st.booleans()):
        for i, old in enumerate(
            draw(st.lists(st.sampled_from(replaceable), unique=True, max_size=2))
            if replaceable
            else []
        ):
            walk.ids.append(old)
            # no nested items in a replacement (depth: the deepest already)
            items.append(walk.item(("serviceOrderItem", i), 2, MAX_ITEM_DEPTH, item_id=old))
        items += walk.items(("serviceOrderItem",), 1, 1, low=0)
    fixed["serviceOrderItem"] = items if items else _ABSENT
    body = walk.object("ServiceOrder_Update", (), 0, fixed)
    # Extension attributes the order has, removed by null.
    for key in current:
        if key not in ALL_NAMES and not key.startswith("@") and draw(st.booleans()):
            body[key] = None
    if include_refused:
        for name in options.server_owned:
            if draw(st.booleans()):
                body[name] = walk.refused_value(name, properties("ServiceOrder")[name], (name,), 1)
                walk.refused_sent.append(name)
    return Generated(body, tuple(walk.refused_sent))


def _item_ids(items: list[dict[str, Any]]) -> list[str]:
    out = []
    for item in items:
        out.append(item["id"])
        out += _item_ids(item.get("serviceOrderItem") or [])
    return out


# -------------------------------------------------------------------- the PATCH model
HEADER_SCALARS = (
    "description",
    "priority",
    "notificationContact",
    "requestedStartDate",
    "requestedCompletionDate",
)


def patched(sent: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """What GET shows after `patch` on an order created with `sent`, as docs/lifecycle.md
    ("What a TMF641 PATCH does with each attribute") says: items merged by id (an item given
    replaces that item whole), related parties replaced whole, notes appended by text (the
    caller's: the author and date sent are not kept, see `patched_note_paths`), header
    values replaced (null: stays), extension attributes merged by key (null removes),
    state and externalId unchanged."""
    out = json.loads(json.dumps(sent))
    for key, value in patch.items():
        if key == "serviceOrderItem":
            if value:
                by_id = {i["id"]: n for n, i in enumerate(out["serviceOrderItem"])}
                for item in value:
                    if item["id"] in by_id:
                        out["serviceOrderItem"][by_id[item["id"]]] = item
                    else:
                        out["serviceOrderItem"].append(item)
        elif key == "relatedParty":
            if value is not None:
                out["relatedParty"] = value
        elif key == "note":
            if value:
                known = {n["text"] for n in out.get("note") or []}
                for note in value:
                    if note["text"] not in known:
                        out.setdefault("note", []).append({"text": note["text"]})
                        known.add(note["text"])
        elif key in ("state", "externalId"):
            continue
        elif key in ALL_NAMES:
            if value is not None:
                out[key] = value
        elif value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


# -------------------------------------------------------------------- the comparator
def _instant(text: str) -> datetime | None:
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            return datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _same_json(a: Any, b: Any) -> bool:
    """Equal as JSON: same types (a boolean is no number, an integer no float), same values."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return (type(a) is type(b) and a == b) or _by_value(a, b)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def _by_value(sent: float, got: int) -> bool:
    """docs/lifecycle.md, "Numbers are kept by value": on PostgreSQL (jsonb) a double with an
    integral value of 1e16 or more in magnitude comes back as the integer of that value; no
    other number changes its JSON type."""
    # The same JSON number: the integer's nearest double is the double sent (the text
    # 4.542596073662733e+16 is the integer 45425960736627330, whose double Python reads).
    return (
        isinstance(sent, float)
        and isinstance(got, int)
        and abs(sent) >= 1e16
        and float(got) == sent
    )


def _schema_of(schema: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    """The schema of attribute `key` of an object of `schema` (None: not in the swagger)."""
    if schema is None:
        return None
    name = ref_name(schema)
    if name is None:
        return None
    found = properties(name).get(key) if name in DEFS else None
    return found


def _opaque(schema: dict[str, Any] | None) -> bool:
    """Not in the swagger's model (an extension attribute), or its `Any`."""
    if schema is None:
        return True
    name = ref_name(schema)
    if name is None:
        return False
    d = DEFS[name]
    return "enum" not in d and not d.get("properties")


def _element(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    if schema is None:
        return None
    return schema.get("items") if schema.get("type") == "array" else None


def differences(
    sent: Any,
    got: Any,
    server_added: Mapping[str, Collection[str]],
    schema: dict[str, Any] | None = None,
    path: tuple[Any, ...] = (),
) -> list[str]:
    """Where `got` does not keep `sent` (or adds what is not on the list), one line each."""
    where = ".".join(map(str, path)) or "(the order)"
    if _opaque(schema):  # an extension attribute or a `value`: kept exactly as sent
        if _same_json(sent, got):
            return []
        return [f"{where}: sent {_short(sent)}, got {_short(got)}"]
    if isinstance(sent, dict):
        if not isinstance(got, dict):
            return [f"{where}: sent an object, got {got!r}"]
        out = []
        for key, value in sent.items():
            sub = _schema_of(schema, key)
            if key not in got:
                if value == [] and (sub is None or sub.get("type") == "array"):
                    continue  # an empty array is left out, as TMF641 examples do
                out.append(f"{where}.{key}: lost (sent {_short(value)})")
                continue
            if (
                key == "serviceOrderItem"
                and ref_name(schema or {}) in ("ServiceOrder", ITEM)
                and isinstance(value, list)
                and isinstance(got[key], list)
            ):
                out += _items(value, got[key], server_added, (*path, key))
                continue
            out += differences(value, got[key], server_added, sub, (*path, key))
        allowed = server_added.get(ref_name(schema or {}) or "", ())
        for key in got.keys() - sent.keys():  # only listed additions
            if key not in allowed:
                out.append(f"{where}.{key}: added, not on the list ({_short(got[key])})")
        return out
    if isinstance(sent, list):
        if not isinstance(got, list):
            return [f"{where}: sent an array, got {_short(got)}"]
        if len(sent) != len(got):
            return [f"{where}: sent {len(sent)} elements, got {len(got)}: {_short(got)}"]
        out = []
        element = _element(schema)
        for i, (a, b) in enumerate(zip(sent, got, strict=True)):
            out += differences(a, b, server_added, element, (*path, i))
        return out
    if schema is not None and schema.get("format") == "date-time" and isinstance(sent, str):
        a, b = _instant(sent), _instant(got) if isinstance(got, str) else None
        if a is not None and a == b:
            return []
    if _same_json(sent, got):
        return []
    return [f"{where}: sent {_short(sent)}, got {_short(got)}"]


def _items(
    sent: list[Any],
    got: list[Any],
    server_added: Mapping[str, Collection[str]],
    path: tuple[Any, ...],
) -> list[str]:
    """Items matched by id (nested ones under their parent)."""
    where = ".".join(map(str, path))
    by_id = {i.get("id"): i for i in got if isinstance(i, dict)}
    out = []
    item_schema = {"$ref": f"#/definitions/{ITEM}"}
    for item in sent:
        found = by_id.get(item.get("id"))
        if found is None:
            out.append(f"{where}: item {item.get('id')!r} lost")
            continue
        out += differences(item, found, server_added, item_schema, (*path, f"[id={item['id']}]"))
    extra = set(by_id) - {i.get("id") for i in sent}
    if extra:
        out.append(f"{where}: items {sorted(map(str, extra))} were not sent")
    return out


def _short(value: Any, limit: int = 200) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[:limit] + "..."


ORDER_SCHEMA = {"$ref": "#/definitions/ServiceOrder"}


def assert_kept(
    sent: dict[str, Any], got: dict[str, Any], server_added: Mapping[str, Collection[str]]
) -> None:
    """`got` (a TMF641 ServiceOrder) keeps every attribute of `sent` and adds only listed ones."""
    problems = differences(sent, got, server_added, ORDER_SCHEMA)
    assert not problems, "not kept:\n  " + "\n  ".join(problems[:40])


NAME = re.compile(r"@?[A-Za-z][A-Za-z0-9]*")
# Attribute names distinctive enough to be looked for in a message (camelCase or @-names).
DISTINCT = frozenset(n for n in ALL_NAMES if n.startswith("@") or any(c.isupper() for c in n))


def assert_error(status: int, body: Any) -> str:
    """A 400 with a TMF Error body; its text (message, reason, code)."""
    assert status == 400, (status, body)
    assert isinstance(body, dict) and body.get("@type") == "Error", body
    return " ".join(str(body.get(k) or "") for k in ("message", "reason", "code"))


def assert_refused(
    message: str, sent_refused: Iterable[str], documented: Mapping[str, Collection[str]]
) -> None:
    """`message` (a 400's or a dead letter's) names each refused attribute sent (by its
    name) and no other distinctive attribute of the swagger than the documented ones (and
    the path to them: `serviceOrderItem`, the event's `serviceOrder`)."""
    sent_refused = list(sent_refused)
    for attribute in sent_refused:
        assert attribute.rsplit(".", 1)[-1] in message, (attribute, message)
    allowed = {n for names in documented.values() for n in names} | {"serviceOrder"}
    allowed |= {step for attribute in sent_refused for step in attribute.split(".")}
    others = {t for t in NAME.findall(message) if t in DISTINCT and t not in allowed}
    assert not others, (
        f"the refusal names attributes not on the documented list: {others}: {message}"
    )
