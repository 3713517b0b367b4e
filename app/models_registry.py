"""Imports every table module so SQLModel.metadata knows the whole schema (Alembic, tests)."""

from sqlmodel import SQLModel

from app.core import audit, idempotency, outbox  # noqa: F401
from app.domain.booking import models as booking_models  # noqa: F401
from app.domain.cards import models as cards_models  # noqa: F401
from app.domain.care import models as care_models  # noqa: F401
from app.domain.catalog import models as catalog_models  # noqa: F401
from app.domain.chatsync import models as chatsync_models  # noqa: F401
from app.domain.checkout import models as checkout_models  # noqa: F401
from app.domain.clinical import consent_models as clinical_consent_models  # noqa: F401
from app.domain.clinical import models as clinical_models  # noqa: F401
from app.domain.clinical import photo_models as clinical_photo_models  # noqa: F401
from app.domain.clinical import plan_models as clinical_plan_models  # noqa: F401
from app.domain.growth import models as growth_models  # noqa: F401
from app.domain.growth import referral_models as growth_referral_models  # noqa: F401
from app.domain.iam import models as iam_models  # noqa: F401
from app.domain.inventory import models as inventory_models  # noqa: F401
from app.domain.loyalty import models as loyalty_models  # noqa: F401
from app.domain.members import identifiers as members_identifiers  # noqa: F401 (MemberIdentifier)
from app.domain.members import models as members_models  # noqa: F401
from app.domain.messaging import models as messaging_models  # noqa: F401
from app.domain.tenancy import models as tenancy_models  # noqa: F401
from app.domain.visits import models as visits_models  # noqa: F401
from app.domain.webhooks import models as webhooks_models  # noqa: F401
from app.domain.wechat_links import models as wechat_links_models  # noqa: F401

metadata = SQLModel.metadata
