"""Custom field definitions: the fields a tenant adds to the member profile (validated by the form engine
in `custom_fields`)."""

from __future__ import annotations

from uuid import UUID

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core import audit
from app.core.actor import Actor
from app.core.errors import Conflict
from app.core.rows import get_or_404
from app.domain.members import custom_fields as fields
from app.domain.members.loading import definitions_of
from app.domain.members.models import CustomFieldDefinition
from app.domain.members.schemas import FieldDefinitionCreate, FieldDefinitionUpdate


async def list_field_definitions(session: AsyncSession, actor: Actor) -> list[CustomFieldDefinition]:
    actor.require("members:read")
    return await definitions_of(session, actor.tenant_id)


async def create_field_definition(session: AsyncSession, actor: Actor, data: FieldDefinitionCreate):
    actor.require("members:write")
    options = [o.model_dump() for o in data.options]
    for option in options:
        option["label"] = option["label"] or option["value"]
    fields.validate_definition(data.type, options, data.min_value, data.max_value)
    if (await session.exec(select(CustomFieldDefinition).where(CustomFieldDefinition.tenant_id == actor.tenant_id,
                                                               CustomFieldDefinition.key == data.key))).first():
        raise Conflict(f"field {data.key!r} exists", code="field_exists", field="key")
    definition = CustomFieldDefinition(tenant_id=actor.tenant_id, **data.model_dump(exclude={"options"}),
                                       options=options)
    session.add(definition)
    await session.flush()
    audit.record(session, "member_field.create", "member_field", definition.id, after=data.model_dump())
    return definition


async def update_field_definition(session: AsyncSession, actor: Actor, definition_id: UUID,
                                  data: FieldDefinitionUpdate) -> CustomFieldDefinition:
    actor.require("members:write")
    definition = await get_or_404(session, CustomFieldDefinition, actor.tenant_id, definition_id,
                                  code="member_field_not_found", detail="member field not found")
    before = audit.snapshot(definition)
    changes = data.model_dump(exclude_unset=True)
    if "options" in changes:
        options = [o.model_dump() for o in data.options or []]
        for option in options:
            option["label"] = option["label"] or option["value"]
        dropped = {o["value"] for o in definition.options} - {o["value"] for o in options}
        if dropped:
            raise Conflict(f"option {sorted(dropped)[0]!r} is in use by history; retire it instead of removing it",
                           code="option_removed", field="options")
        changes["options"] = options
    merged = {**audit.snapshot(definition), **changes}
    fields.validate_definition(definition.type, merged["options"], merged["min_value"], merged["max_value"])
    for key, value in changes.items():
        setattr(definition, key, value)
    session.add(definition)
    await session.flush()
    audit.record(session, "member_field.update", "member_field", definition.id, before=before, after=changes)
    return definition
