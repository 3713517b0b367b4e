"""Fakes of external services for tests (real HTTP servers on 127.0.0.1)."""

from tests.fakes.wechat_pay import FakeWeChatPay, fake_pay_thread, pay_settings, running_fake_pay, use_fake_pay

__all__ = ["FakeWeChatPay", "fake_pay_thread", "pay_settings", "running_fake_pay", "use_fake_pay"]
