"""The fake WeChat server for the patient tests (real HTTP), as tests/integrations has it."""

from tests.integrations.conftest import fake_wechat, wechat  # noqa: F401
