from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from app.core.schemas import Name, Strict

Gender = Literal["female", "male", "other"]
TagName = Name
MAX_TAGS = 50


def _check_birthday(value: date | None) -> date | None:
    if value is not None and not (date(1900, 1, 1) <= value <= date.today()):
        raise ValueError("birthday must be between 1900-01-01 and today")
    return value


def _check_tags(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    cleaned = []
    for tag in value:
        tag = tag.strip()
        if not tag or len(tag) > 30:
            raise ValueError("each tag must be 1–30 characters")
        if tag not in cleaned:
            cleaned.append(tag)
    return cleaned


def _check_constitution(value: list[str] | None) -> list[str] | None:
    # Checked here rather than in the field's type so the published schema stays as it is.
    if value is not None and any(not item.strip() or len(item) > 20 for item in value):
        raise ValueError("each constitution type must be 1–20 characters")
    return value


class HealthFields(Strict):
    allergy_history: str | None = Field(None, max_length=2000, description="过敏史")
    past_history: str | None = Field(None, max_length=4000, description="既往史")
    family_history: str | None = Field(None, max_length=2000, description="家族史")
    constitution: list[str] | None = Field(None, max_length=9, description="TCM constitution (体质), e.g. 气虚, 痰湿")
    health_summary: str | None = Field(None, max_length=4000)

    _constitution = field_validator("constitution")(_check_constitution)


class MemberBase(Strict):
    gender: Gender | None = None
    birthday: date | None = None
    id_number: str | None = Field(None, max_length=30, description="Resident ID (18 characters, checked)")
    address: str | None = Field(None, max_length=300)
    source_channel: str | None = Field(None, max_length=50, description="e.g. 美团, 抖音, 老带新, walk_in")
    referrer_id: UUID | None = None
    owner_staff_id: UUID | None = Field(None, description="The consultant or therapist who owns the relationship")
    home_store_id: UUID | None = None
    notes: str | None = Field(None, max_length=2000)
    custom_fields: dict[str, Any] | None = Field(None, max_length=200)
    health: HealthFields | None = None
    other_phone: str | None = Field(None, max_length=40, description="A second contact: a landline (座机, e.g. "
                                    "021-64381234) or any number that is not the member's mobile")

    _birthday = field_validator("birthday")(_check_birthday)


class MemberCreate(MemberBase):
    name: Name = Field(min_length=1, max_length=50)
    phone: str = Field(min_length=5, max_length=30)
    tags: list[TagName] = Field(default_factory=list, max_length=MAX_TAGS)

    _tags = field_validator("tags")(_check_tags)


class ImportedMember(MemberCreate):
    """A member from an import file, whose row may hold only a landline (kept as `other_phone`, no mobile)."""

    phone: str | None = Field(None, min_length=5, max_length=30)  # type: ignore[assignment]


class MemberUpdate(MemberBase):
    name: Name | None = Field(None, min_length=1, max_length=50)
    phone: str | None = Field(None, min_length=5, max_length=30)
    tags: list[TagName] | None = Field(None, max_length=MAX_TAGS, description="Replaces the member's manual tags")

    _tags = field_validator("tags")(_check_tags)


class HealthSharing(Strict):
    share_with_family: StrictBool = Field(description="true: the family's head sees this member's health data in "
                                          "the mini-program; false withdraws it")


class HealthOut(BaseModel):
    allergy_history: str | None
    past_history: str | None
    family_history: str | None
    constitution: list[str]
    health_summary: str | None


class FamilyRef(BaseModel):
    group_id: UUID
    role: str | None
    relation: str | None


class MemberOut(BaseModel):
    id: UUID
    name: str
    phone: str | None = Field(description="Masked (138****5678) without members.contact:read")
    phone_masked: bool
    other_phone: str | None = Field(None, description="The second contact (a landline), masked like the phone")
    gender: str | None
    birthday: date | None
    id_number: str | None
    address: str | None
    source_channel: str | None
    referrer_id: UUID | None
    owner_staff_id: UUID | None
    home_store_id: UUID | None
    notes: str | None
    tags: list[str]
    custom_fields: dict[str, Any]
    family: FamilyRef | None
    health: HealthOut | None = Field(description="null when the caller may not see health data")
    health_visible: bool
    health_shared_with_family: bool = Field(description="The member consented to show their health data to "
                                            "their family's head (a minor's is shown to the head without)")
    status: str
    merged_into_id: UUID | None
    last_visit_at: datetime | None
    created_at: datetime | None
    updated_at: datetime | None


class MemberSummary(BaseModel):
    id: UUID
    name: str
    phone: str | None
    gender: str | None
    birthday: date | None
    tags: list[str]
    home_store_id: UUID | None
    owner_staff_id: UUID | None
    last_visit_at: datetime | None
    status: str


class TagChange(Strict):
    add: list[TagName] = Field(default_factory=list, max_length=MAX_TAGS)
    remove: list[TagName] = Field(default_factory=list, max_length=MAX_TAGS)

    _add = field_validator("add")(_check_tags)
    _remove = field_validator("remove")(_check_tags)


class TagGroupCreate(Strict):
    name: Name = Field(min_length=1, max_length=30)
    exclusive: bool = False
    position: int = Field(0, ge=0, le=10_000)


class TagGroupOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: UUID
    name: str
    exclusive: bool
    position: int


class TagCreate(Strict):
    name: TagName = Field(min_length=1, max_length=30)
    group_id: UUID | None = None
    color: str | None = Field(None, pattern=r"^#[0-9a-fA-F]{6}$")


class TagOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: UUID
    name: str
    group_id: UUID | None
    color: str | None
    member_count: int | None = None


class SynonymCreate(Strict):
    synonym: Name = Field(min_length=1, max_length=30)
    tag_name: TagName = Field(min_length=1, max_length=30)


class SynonymOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: UUID
    synonym: str
    tag_name: str


FieldType = Literal["text", "number", "date", "single_select", "multi_select", "scale", "boolean"]


class FieldOption(Strict):
    value: Name = Field(min_length=1, max_length=50)
    label: Name | None = Field(None, max_length=50)
    retired: bool = False


class FieldDefinitionCreate(Strict):
    key: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$", description="Stable key in custom_fields")
    label: Name = Field(min_length=1, max_length=50)
    type: FieldType
    required: bool = False
    options: list[FieldOption] = Field(default_factory=list, max_length=200)
    min_value: float | None = Field(None, allow_inf_nan=False)
    max_value: float | None = Field(None, allow_inf_nan=False)
    max_length: int | None = Field(None, ge=1, le=2000)
    position: int = Field(0, ge=0, le=10_000)
    health: bool = Field(False, description="Health-sensitive: visible only with health access")
    help_text: str | None = Field(None, max_length=200)


class FieldDefinitionUpdate(Strict):
    label: Name | None = Field(None, min_length=1, max_length=50)
    required: bool | None = None
    options: list[FieldOption] | None = Field(None, max_length=200, description="Options may be added or "
                                              "retired; an existing option cannot be removed")
    min_value: float | None = Field(None, allow_inf_nan=False)
    max_value: float | None = Field(None, allow_inf_nan=False)
    max_length: int | None = Field(None, ge=1, le=2000)
    position: int | None = Field(None, ge=0, le=10_000)
    active: bool | None = None
    help_text: str | None = Field(None, max_length=200)


class FieldDefinitionOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: UUID
    key: str
    label: str
    type: str
    required: bool
    options: list[dict[str, Any]]
    min_value: float | None
    max_value: float | None
    max_length: int | None
    position: int
    health: bool
    active: bool
    help_text: str | None


class FamilyCreate(Strict):
    name: Name = Field(min_length=1, max_length=50)
    head_member_id: UUID


class FamilyMemberAdd(Strict):
    member_id: UUID
    relation: Name = Field(min_length=1, max_length=20, description="e.g. spouse, child, parent")


class FamilyOut(BaseModel):
    id: UUID
    name: str
    head_member_id: UUID
    members: list[dict[str, Any]]


class NoteCreate(Strict):
    body: str = Field(min_length=1, max_length=4000)


class NoteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: UUID
    member_id: UUID
    author_type: str
    author_id: UUID | None
    body: str
    created_at: datetime | None


class TimelineItem(BaseModel):
    type: str = Field(description="appointment, service_record, order, card_change, message, note, member …")
    occurred_at: datetime
    id: str
    title: str
    data: dict[str, Any] = Field(default_factory=dict)


class TimelinePage(BaseModel):
    items: list[TimelineItem]
    next_cursor: str | None


class EraseRequest(Strict):
    reason: str = Field(min_length=2, max_length=500)


class MergeRequest(Strict):
    duplicate_id: UUID = Field(description="The member folded into the survivor (the path's member)")
    reason: str | None = Field(None, max_length=500)


# ---------------------------------------------------------------- member imports: the report


class ImportRowError(BaseModel):
    row: int = Field(description="1-based row number in the file, as a spreadsheet program shows it")
    field: str = Field(description="Member field, e.g. `phone`, `birthday`, `custom.tongue`, `health.constitution`")
    column: str | None = Field(None, description="The file's column header")
    message: str
    value: str | None = Field(None, description="The cell as read (phone and ID numbers masked, long text cut)")


class ImportRowExisting(ImportRowError):
    member_id: UUID
    action: Literal["skip", "update", "unchanged"]


class ImportRowSkipped(BaseModel):
    row: int = Field(description="1-based row number in the file")
    last_row: int | None = Field(None, description="The last of a run of blank rows")
    kind: Literal["title", "blank", "totals"]
    reason: str


class ImportColumn(BaseModel):
    column: str
    field: str


class ImportReport(BaseModel):
    id: UUID
    filename: str
    file_sha256: str
    file_type: str
    dry_run: bool
    mode: str
    on_existing: str
    status: str = Field(description="checked (dry run) | imported | partially_imported | rejected")
    total_rows: int = Field(description="Data rows in the file (blank rows not counted)")
    created_count: int = Field(description="Members created (a dry run: that would be created)")
    updated_count: int
    skipped_count: int = Field(description="Rows whose phone belongs to an existing member, left as they were")
    error_count: int = Field(description="Rows with at least one error (not written)")
    columns: list[ImportColumn]
    ignored_columns: list[str]
    errors: list[ImportRowError]
    existing: list[ImportRowExisting] = Field(description="Rows matching an existing member by phone")
    skipped_rows: list[ImportRowSkipped] = Field(default_factory=list, description="Rows that are not members: "
                                                 "titles above the header, blank rows and totals rows (合计…)")
    created_at: datetime | None
    created_by: UUID | None


class OwnProfileUpdate(Strict):
    """What a patient may change of their own record in the mini-program. Leave a field out to keep it;
    the phone number is proven through WeChat, never typed (it signs them in)."""

    # Typed without None: an explicit null is refused (a name, gender or birthday is not erased from here).
    name: Name = Field(None, min_length=1, max_length=50)
    gender: Gender = Field(None)
    birthday: date = Field(None)
    address: str | None = Field(None, max_length=300, description="null clears it")

    _birthday = field_validator("birthday")(_check_birthday)


class ChildCreate(Strict):
    """A child added by a parent in the mini-program: a member without a phone, in the parent's family (one is
    made, headed by the parent, when they have none)."""

    name: Name = Field(min_length=1, max_length=50)
    birthday: date = Field(description="A child is under 18 on the day they are added")
    gender: Gender | None = None

    _birthday = field_validator("birthday")(_check_birthday)


class ConsentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    kind: str
    version: str
    accepted_at: datetime
    channel: str
