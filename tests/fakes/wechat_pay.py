"""The WeChat Pay fake lives in the app (`careloop fake-wechat` serves it too); tests import it from here."""

from app.integrations.wechat.fake_pay import (  # noqa: F401
    FakeWeChatPay,
    fake_pay_thread,
    pay_settings,
    running_fake_pay,
    use_fake_pay,
)
