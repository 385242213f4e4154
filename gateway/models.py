"""Every domain's models imported in one place, so Alembic sees one complete metadata."""

from gateway import idempotency as _idempotency  # noqa: F401
from gateway import outbox as _outbox  # noqa: F401
from gateway.audit import models as _audit  # noqa: F401
from gateway.auth import mfa as _mfa  # noqa: F401
from gateway.auth import models as _auth  # noqa: F401
from gateway.auth import sso_accounts as _sso  # noqa: F401
from gateway.batches import models as _batches  # noqa: F401
from gateway.db import Base
from gateway.facilities import models as _facilities  # noqa: F401
from gateway.fhir import models as _fhir  # noqa: F401
from gateway.intake import models as _intake  # noqa: F401
from gateway.intake import release_models as _release  # noqa: F401
from gateway.mail import models as _mail  # noqa: F401
from gateway.messages import models as _messages  # noqa: F401
from gateway.portal import models as _portal  # noqa: F401
from gateway.routing import models as _routing  # noqa: F401
from gateway.webhooks import models as _webhooks  # noqa: F401

metadata = Base.metadata
