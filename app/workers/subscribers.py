"""Every module that reacts to outbox events, imported so that its `@on(...)` handlers are registered in
any process that runs jobs (`careloop worker`, or the worker inside `careloop serve`)."""

from app.domain.booking import waitlist  # noqa: F401  appointment.cancelled/rescheduled/booked
from app.domain.care import engine as care_engine  # noqa: F401  the rules' trigger topics, care.rule_due
from app.domain.chatsync import service as chatsync  # noqa: F401  wecom.msgaudit_notify, chat_sync.requested
from app.domain.checkout import refunds  # noqa: F401  refund.wechat_requested: ask WeChat after commit
from app.domain.messaging import service as messaging  # noqa: F401  message.send (delivery)
from app.domain.webhooks import service as webhooks  # noqa: F401  every topic ("*"): webhook fan-out
from app.domain.wechat_links import service as wechat_links  # noqa: F401  member.erased: drop WeChat bindings
