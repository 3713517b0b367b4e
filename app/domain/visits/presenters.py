"""How service records are shown, one presenter per audience.

Staff and integrations get the whole record. Patients get it without the therapist's clinical remarks
(`notes`), which the member timeline hides from them too (`staff_only_keys`). Every route that returns a
service record goes through `present_record`, which picks the presenter from the actor.
"""

from __future__ import annotations

from collections.abc import Callable

from app.core.actor import Actor
from app.domain.visits.models import ServiceRecord
from app.domain.visits.schemas import ServiceRecordOut

STAFF_AUDIENCES = frozenset({"staff", "integration"})
# What patients never see of a service record (the member timeline hides the same key).
STAFF_ONLY_FIELDS = ("notes",)


def record_for_staff(record: ServiceRecord) -> ServiceRecordOut:
    return ServiceRecordOut.model_validate(record)


def record_for_patient(record: ServiceRecord) -> ServiceRecordOut:
    return record_for_staff(record).model_copy(update=dict.fromkeys(STAFF_ONLY_FIELDS))


def presenter_for(actor: Actor) -> Callable[[ServiceRecord], ServiceRecordOut]:
    """Staff and integrations see the whole record; anyone else (patients) the patient view."""
    return record_for_staff if actor.kind in STAFF_AUDIENCES else record_for_patient


def present_record(actor: Actor, record: ServiceRecord) -> ServiceRecordOut:
    return presenter_for(actor)(record)
