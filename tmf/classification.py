"""What each attribute of TMF641 v4.1 holds, for personal data (issue 19; docs/audit.md,
"What each attribute holds"): every attribute of every definition reachable from
`ServiceOrder_Create`, `ServiceOrder`, `ServiceOrder_Update` and
`CancelServiceOrder_Create` in the official swagger, keyed `Definition.attribute`.

Machine-readable, and checked: tests/integration/test_classification.py compares it with
the swagger (every attribute classed, no stale entry) and with the table in docs/audit.md
(`markdown_table` writes it), and shows for every attribute classed sealed that a value
sent there is stored as a token only and comes back revealed.

A definition used in several places is classed by where the order, item or note holds it
typed; inside a service (`ServiceRefOrValue`'s other attributes: its notes, related
parties, features, relationships, ...) and in `externalReference` and `appointment`, the
whole object is kept as sent and every text in it is sealed, whatever its class here.
"""

from __future__ import annotations

# The classes (what the stored events hold, and why).
NOT_PERSONAL = "not personal"  # enumerations, dates, quantities, types the domain reads
IDENTIFIER = "identifier: not sealed"  # what reports, queues and erasure select on
PERSONAL = "personal: sealed"  # names, places' names, the notification contact
FREE_TEXT = "free text: sealed"  # descriptions, notes, reasons (and what tells them back)
AS_SENT = "kept as sent: sealed"  # opaque attributes, every text in them sealed
AS_SENT_PLAIN = "kept as sent: not sealed (boolean)"  # opaque, but not a text
CATALOG = "catalog value: not sealed"  # characteristic values: the catalog checks them
STRUCTURE = "structure: its attributes are classed"  # a typed object or list of them
SERVER = "server-owned"  # the server sets it (refused on create; a patch may only echo it)
REFUSED = "refused when sent (400 naming it)"  # the server's, or fixed at creation
NOT_KEPT = "not kept"  # names the order a request is about; nothing else of it is stored

CLASSES_IN_ORDER = (
    PERSONAL,
    FREE_TEXT,
    AS_SENT,
    AS_SENT_PLAIN,
    IDENTIFIER,
    NOT_PERSONAL,
    CATALOG,
    STRUCTURE,
    SERVER,
    REFUSED,
    NOT_KEPT,
)
SEALED = frozenset({PERSONAL, FREE_TEXT, AS_SENT})

ROOTS = ("ServiceOrder_Create", "ServiceOrder", "ServiceOrder_Update", "CancelServiceOrder_Create")

CLASSIFICATION: dict[str, str] = {
    # ServiceOrder_Create
    "ServiceOrder_Create.cancellationDate": REFUSED,
    "ServiceOrder_Create.cancellationReason": REFUSED,
    "ServiceOrder_Create.category": NOT_PERSONAL,
    "ServiceOrder_Create.description": FREE_TEXT,
    "ServiceOrder_Create.externalId": IDENTIFIER,
    "ServiceOrder_Create.notificationContact": PERSONAL,
    "ServiceOrder_Create.priority": NOT_PERSONAL,
    "ServiceOrder_Create.requestedCompletionDate": NOT_PERSONAL,
    "ServiceOrder_Create.requestedStartDate": NOT_PERSONAL,
    "ServiceOrder_Create.externalReference": AS_SENT,
    "ServiceOrder_Create.note": STRUCTURE,
    "ServiceOrder_Create.orderRelationship": STRUCTURE,
    "ServiceOrder_Create.relatedParty": STRUCTURE,
    "ServiceOrder_Create.serviceOrderItem": STRUCTURE,
    "ServiceOrder_Create.@baseType": AS_SENT,
    "ServiceOrder_Create.@schemaLocation": AS_SENT,
    "ServiceOrder_Create.@type": AS_SENT,
    # ServiceOrder
    "ServiceOrder.id": SERVER,
    "ServiceOrder.href": SERVER,
    "ServiceOrder.cancellationDate": SERVER,
    "ServiceOrder.cancellationReason": FREE_TEXT,
    "ServiceOrder.category": NOT_PERSONAL,
    "ServiceOrder.completionDate": SERVER,
    "ServiceOrder.description": FREE_TEXT,
    "ServiceOrder.expectedCompletionDate": SERVER,
    "ServiceOrder.externalId": IDENTIFIER,
    "ServiceOrder.notificationContact": PERSONAL,
    "ServiceOrder.orderDate": SERVER,
    "ServiceOrder.priority": NOT_PERSONAL,
    "ServiceOrder.requestedCompletionDate": NOT_PERSONAL,
    "ServiceOrder.requestedStartDate": NOT_PERSONAL,
    "ServiceOrder.startDate": SERVER,
    "ServiceOrder.errorMessage": SERVER,
    "ServiceOrder.externalReference": AS_SENT,
    "ServiceOrder.jeopardyAlert": SERVER,
    "ServiceOrder.milestone": SERVER,
    "ServiceOrder.note": STRUCTURE,
    "ServiceOrder.orderRelationship": STRUCTURE,
    "ServiceOrder.relatedParty": STRUCTURE,
    "ServiceOrder.serviceOrderItem": STRUCTURE,
    "ServiceOrder.state": SERVER,
    "ServiceOrder.@baseType": AS_SENT,
    "ServiceOrder.@schemaLocation": AS_SENT,
    "ServiceOrder.@type": AS_SENT,
    # ServiceOrder_Update
    "ServiceOrder_Update.description": FREE_TEXT,
    "ServiceOrder_Update.expectedCompletionDate": REFUSED,
    "ServiceOrder_Update.externalId": IDENTIFIER,
    "ServiceOrder_Update.notificationContact": PERSONAL,
    "ServiceOrder_Update.priority": NOT_PERSONAL,
    "ServiceOrder_Update.requestedCompletionDate": NOT_PERSONAL,
    "ServiceOrder_Update.requestedStartDate": NOT_PERSONAL,
    "ServiceOrder_Update.externalReference": REFUSED,
    "ServiceOrder_Update.note": STRUCTURE,
    "ServiceOrder_Update.orderRelationship": REFUSED,
    "ServiceOrder_Update.relatedParty": STRUCTURE,
    "ServiceOrder_Update.serviceOrderItem": STRUCTURE,
    "ServiceOrder_Update.state": SERVER,
    # CancelServiceOrder_Create
    "CancelServiceOrder_Create.cancellationReason": FREE_TEXT,
    "CancelServiceOrder_Create.requestedCancellationDate": NOT_PERSONAL,
    "CancelServiceOrder_Create.serviceOrder": STRUCTURE,
    "CancelServiceOrder_Create.@baseType": NOT_KEPT,
    "CancelServiceOrder_Create.@schemaLocation": NOT_KEPT,
    "CancelServiceOrder_Create.@type": NOT_KEPT,
    # ExternalReference
    "ExternalReference.id": AS_SENT,
    "ExternalReference.href": AS_SENT,
    "ExternalReference.externalReferenceType": AS_SENT,
    "ExternalReference.name": AS_SENT,
    "ExternalReference.@baseType": AS_SENT,
    "ExternalReference.@schemaLocation": AS_SENT,
    "ExternalReference.@type": AS_SENT,
    # Note
    "Note.id": AS_SENT,
    "Note.author": FREE_TEXT,
    "Note.date": NOT_PERSONAL,
    "Note.text": FREE_TEXT,
    "Note.@baseType": AS_SENT,
    "Note.@schemaLocation": AS_SENT,
    "Note.@type": AS_SENT,
    # ServiceOrderRelationship
    "ServiceOrderRelationship.id": IDENTIFIER,
    "ServiceOrderRelationship.href": AS_SENT,
    "ServiceOrderRelationship.relationshipType": NOT_PERSONAL,
    "ServiceOrderRelationship.@baseType": AS_SENT,
    "ServiceOrderRelationship.@schemaLocation": AS_SENT,
    "ServiceOrderRelationship.@type": AS_SENT,
    "ServiceOrderRelationship.@referredType": AS_SENT,
    # RelatedParty
    "RelatedParty.id": IDENTIFIER,
    "RelatedParty.href": AS_SENT,
    "RelatedParty.name": PERSONAL,
    "RelatedParty.role": NOT_PERSONAL,
    "RelatedParty.@baseType": AS_SENT,
    "RelatedParty.@schemaLocation": AS_SENT,
    "RelatedParty.@type": AS_SENT,
    "RelatedParty.@referredType": NOT_PERSONAL,
    # ServiceOrderItem
    "ServiceOrderItem.id": IDENTIFIER,
    "ServiceOrderItem.quantity": NOT_PERSONAL,
    "ServiceOrderItem.action": NOT_PERSONAL,
    "ServiceOrderItem.appointment": AS_SENT,
    "ServiceOrderItem.errorMessage": SERVER,
    "ServiceOrderItem.service": STRUCTURE,
    "ServiceOrderItem.serviceOrderItem": STRUCTURE,
    "ServiceOrderItem.serviceOrderItemRelationship": STRUCTURE,
    "ServiceOrderItem.state": SERVER,
    "ServiceOrderItem.@baseType": AS_SENT,
    "ServiceOrderItem.@schemaLocation": AS_SENT,
    "ServiceOrderItem.@type": AS_SENT,
    # ServiceOrderErrorMessage
    "ServiceOrderErrorMessage.code": SERVER,
    "ServiceOrderErrorMessage.message": FREE_TEXT,
    "ServiceOrderErrorMessage.reason": SERVER,
    "ServiceOrderErrorMessage.referenceError": SERVER,
    "ServiceOrderErrorMessage.status": SERVER,
    "ServiceOrderErrorMessage.timestamp": SERVER,
    "ServiceOrderErrorMessage.serviceOrderItem": SERVER,
    "ServiceOrderErrorMessage.@baseType": SERVER,
    "ServiceOrderErrorMessage.@schemaLocation": SERVER,
    "ServiceOrderErrorMessage.@type": SERVER,
    # ServiceOrderJeopardyAlert
    "ServiceOrderJeopardyAlert.id": SERVER,
    "ServiceOrderJeopardyAlert.alertDate": SERVER,
    "ServiceOrderJeopardyAlert.exception": SERVER,
    "ServiceOrderJeopardyAlert.jeopardyType": SERVER,
    "ServiceOrderJeopardyAlert.message": SERVER,
    "ServiceOrderJeopardyAlert.name": SERVER,
    "ServiceOrderJeopardyAlert.serviceOrderItem": SERVER,
    "ServiceOrderJeopardyAlert.@baseType": SERVER,
    "ServiceOrderJeopardyAlert.@schemaLocation": SERVER,
    "ServiceOrderJeopardyAlert.@type": SERVER,
    # ServiceOrderMilestone
    "ServiceOrderMilestone.id": SERVER,
    "ServiceOrderMilestone.description": SERVER,
    "ServiceOrderMilestone.message": FREE_TEXT,
    "ServiceOrderMilestone.milestoneDate": SERVER,
    "ServiceOrderMilestone.name": SERVER,
    "ServiceOrderMilestone.status": SERVER,
    "ServiceOrderMilestone.serviceOrderItem": SERVER,
    "ServiceOrderMilestone.@baseType": SERVER,
    "ServiceOrderMilestone.@schemaLocation": SERVER,
    "ServiceOrderMilestone.@type": SERVER,
    # ServiceOrderRef
    "ServiceOrderRef.id": IDENTIFIER,
    "ServiceOrderRef.href": NOT_KEPT,
    "ServiceOrderRef.name": NOT_KEPT,
    "ServiceOrderRef.@baseType": NOT_KEPT,
    "ServiceOrderRef.@schemaLocation": NOT_KEPT,
    "ServiceOrderRef.@type": NOT_KEPT,
    "ServiceOrderRef.@referredType": NOT_KEPT,
    # AppointmentRef
    "AppointmentRef.id": AS_SENT,
    "AppointmentRef.href": AS_SENT,
    "AppointmentRef.description": AS_SENT,
    "AppointmentRef.@baseType": AS_SENT,
    "AppointmentRef.@schemaLocation": AS_SENT,
    "AppointmentRef.@type": AS_SENT,
    "AppointmentRef.@referredType": AS_SENT,
    # ServiceOrderItemErrorMessage
    "ServiceOrderItemErrorMessage.code": SERVER,
    "ServiceOrderItemErrorMessage.message": FREE_TEXT,
    "ServiceOrderItemErrorMessage.reason": SERVER,
    "ServiceOrderItemErrorMessage.referenceError": SERVER,
    "ServiceOrderItemErrorMessage.status": SERVER,
    "ServiceOrderItemErrorMessage.timestamp": SERVER,
    "ServiceOrderItemErrorMessage.@baseType": SERVER,
    "ServiceOrderItemErrorMessage.@schemaLocation": SERVER,
    "ServiceOrderItemErrorMessage.@type": SERVER,
    # ServiceRefOrValue
    "ServiceRefOrValue.id": IDENTIFIER,
    "ServiceRefOrValue.href": AS_SENT,
    "ServiceRefOrValue.category": AS_SENT,
    "ServiceRefOrValue.description": AS_SENT,
    "ServiceRefOrValue.endDate": AS_SENT,
    "ServiceRefOrValue.hasStarted": AS_SENT_PLAIN,
    "ServiceRefOrValue.isBundle": AS_SENT_PLAIN,
    "ServiceRefOrValue.isServiceEnabled": AS_SENT_PLAIN,
    "ServiceRefOrValue.isStateful": AS_SENT_PLAIN,
    "ServiceRefOrValue.name": FREE_TEXT,
    "ServiceRefOrValue.serviceDate": AS_SENT,
    "ServiceRefOrValue.serviceType": AS_SENT,
    "ServiceRefOrValue.startDate": AS_SENT,
    "ServiceRefOrValue.startMode": AS_SENT,
    "ServiceRefOrValue.feature": AS_SENT,
    "ServiceRefOrValue.note": AS_SENT,
    "ServiceRefOrValue.place": STRUCTURE,
    "ServiceRefOrValue.relatedEntity": AS_SENT,
    "ServiceRefOrValue.relatedParty": AS_SENT,
    "ServiceRefOrValue.serviceCharacteristic": STRUCTURE,
    "ServiceRefOrValue.serviceOrderItem": AS_SENT,
    "ServiceRefOrValue.serviceRelationship": AS_SENT,
    "ServiceRefOrValue.serviceSpecification": STRUCTURE,
    "ServiceRefOrValue.state": AS_SENT,
    "ServiceRefOrValue.supportingResource": AS_SENT,
    "ServiceRefOrValue.supportingService": AS_SENT,
    "ServiceRefOrValue.@baseType": AS_SENT,
    "ServiceRefOrValue.@schemaLocation": AS_SENT,
    "ServiceRefOrValue.@type": AS_SENT,
    "ServiceRefOrValue.@referredType": AS_SENT,
    # ServiceOrderItemRelationship
    "ServiceOrderItemRelationship.relationshipType": NOT_PERSONAL,
    "ServiceOrderItemRelationship.orderItem": STRUCTURE,
    "ServiceOrderItemRelationship.@baseType": AS_SENT,
    "ServiceOrderItemRelationship.@schemaLocation": AS_SENT,
    "ServiceOrderItemRelationship.@type": AS_SENT,
    # ServiceOrderItemRef
    "ServiceOrderItemRef.itemId": IDENTIFIER,
    "ServiceOrderItemRef.serviceOrderHref": AS_SENT,
    "ServiceOrderItemRef.serviceOrderId": AS_SENT,
    "ServiceOrderItemRef.@baseType": AS_SENT,
    "ServiceOrderItemRef.@schemaLocation": AS_SENT,
    "ServiceOrderItemRef.@type": AS_SENT,
    "ServiceOrderItemRef.@referredType": AS_SENT,
    # Feature
    "Feature.id": AS_SENT,
    "Feature.isBundle": AS_SENT_PLAIN,
    "Feature.isEnabled": AS_SENT_PLAIN,
    "Feature.name": AS_SENT,
    "Feature.constraint": AS_SENT,
    "Feature.featureCharacteristic": AS_SENT,
    "Feature.featureRelationship": AS_SENT,
    # RelatedPlaceRefOrValue
    "RelatedPlaceRefOrValue.id": IDENTIFIER,
    "RelatedPlaceRefOrValue.href": AS_SENT,
    "RelatedPlaceRefOrValue.name": PERSONAL,
    "RelatedPlaceRefOrValue.role": NOT_PERSONAL,
    "RelatedPlaceRefOrValue.@baseType": AS_SENT,
    "RelatedPlaceRefOrValue.@schemaLocation": AS_SENT,
    "RelatedPlaceRefOrValue.@type": AS_SENT,
    "RelatedPlaceRefOrValue.@referredType": AS_SENT,
    # RelatedEntityRefOrValue
    "RelatedEntityRefOrValue.id": AS_SENT,
    "RelatedEntityRefOrValue.href": AS_SENT,
    "RelatedEntityRefOrValue.name": AS_SENT,
    "RelatedEntityRefOrValue.role": AS_SENT,
    "RelatedEntityRefOrValue.@baseType": AS_SENT,
    "RelatedEntityRefOrValue.@schemaLocation": AS_SENT,
    "RelatedEntityRefOrValue.@type": AS_SENT,
    "RelatedEntityRefOrValue.@referredType": AS_SENT,
    # Characteristic
    "Characteristic.id": AS_SENT,
    "Characteristic.name": NOT_PERSONAL,
    "Characteristic.valueType": AS_SENT,
    "Characteristic.characteristicRelationship": AS_SENT,
    "Characteristic.value": CATALOG,
    "Characteristic.@baseType": AS_SENT,
    "Characteristic.@schemaLocation": AS_SENT,
    "Characteristic.@type": AS_SENT,
    # RelatedServiceOrderItem
    "RelatedServiceOrderItem.id": AS_SENT,
    "RelatedServiceOrderItem.href": AS_SENT,
    "RelatedServiceOrderItem.itemId": AS_SENT,
    "RelatedServiceOrderItem.role": AS_SENT,
    "RelatedServiceOrderItem.serviceOrderHref": AS_SENT,
    "RelatedServiceOrderItem.serviceOrderId": AS_SENT,
    "RelatedServiceOrderItem.itemAction": AS_SENT,
    "RelatedServiceOrderItem.@baseType": AS_SENT,
    "RelatedServiceOrderItem.@schemaLocation": AS_SENT,
    "RelatedServiceOrderItem.@type": AS_SENT,
    "RelatedServiceOrderItem.@referredType": AS_SENT,
    # ServiceRelationship
    "ServiceRelationship.id": AS_SENT,
    "ServiceRelationship.href": AS_SENT,
    "ServiceRelationship.relationshipType": AS_SENT,
    "ServiceRelationship.service": AS_SENT,
    "ServiceRelationship.serviceRelationshipCharacteristic": AS_SENT,
    "ServiceRelationship.@baseType": AS_SENT,
    "ServiceRelationship.@schemaLocation": AS_SENT,
    "ServiceRelationship.@type": AS_SENT,
    # ServiceSpecificationRef
    "ServiceSpecificationRef.id": NOT_PERSONAL,
    "ServiceSpecificationRef.href": AS_SENT,
    "ServiceSpecificationRef.name": NOT_PERSONAL,
    "ServiceSpecificationRef.version": NOT_PERSONAL,
    "ServiceSpecificationRef.@baseType": AS_SENT,
    "ServiceSpecificationRef.@schemaLocation": AS_SENT,
    "ServiceSpecificationRef.@type": AS_SENT,
    "ServiceSpecificationRef.@referredType": AS_SENT,
    # ResourceRef
    "ResourceRef.id": AS_SENT,
    "ResourceRef.href": AS_SENT,
    "ResourceRef.name": AS_SENT,
    "ResourceRef.@baseType": AS_SENT,
    "ResourceRef.@schemaLocation": AS_SENT,
    "ResourceRef.@type": AS_SENT,
    "ResourceRef.@referredType": AS_SENT,
    # ConstraintRef
    "ConstraintRef.id": AS_SENT,
    "ConstraintRef.href": AS_SENT,
    "ConstraintRef.name": AS_SENT,
    "ConstraintRef.version": AS_SENT,
    "ConstraintRef.@baseType": AS_SENT,
    "ConstraintRef.@schemaLocation": AS_SENT,
    "ConstraintRef.@type": AS_SENT,
    "ConstraintRef.@referredType": AS_SENT,
    # FeatureRelationship
    "FeatureRelationship.id": AS_SENT,
    "FeatureRelationship.name": AS_SENT,
    "FeatureRelationship.relationshipType": AS_SENT,
    "FeatureRelationship.validFor": AS_SENT,
    # CharacteristicRelationship
    "CharacteristicRelationship.id": AS_SENT,
    "CharacteristicRelationship.href": AS_SENT,
    "CharacteristicRelationship.relationshipType": AS_SENT,
    "CharacteristicRelationship.@baseType": AS_SENT,
    "CharacteristicRelationship.@schemaLocation": AS_SENT,
    "CharacteristicRelationship.@type": AS_SENT,
    # TimePeriod
    "TimePeriod.endDateTime": AS_SENT,
    "TimePeriod.startDateTime": AS_SENT,
}


def markdown_table() -> str:
    """The table docs/audit.md carries ("What each attribute holds"), one row per attribute."""
    lines = ["| Attribute | Class |", "| --- | --- |"]
    lines += [f"| `{name}` | {kind} |" for name, kind in CLASSIFICATION.items()]
    return "\n".join(lines)
