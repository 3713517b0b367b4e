"""What is sent is sendable, and what was not sent is not called sent: subscribe-message keyword values follow
WeChat's rules per keyword type (refused when the template is saved, skipped with a reason when a value
cannot be sent), and an SMS without a gateway is recorded as not sent."""

from __future__ import annotations

from uuid import UUID

import pytest

from app.domain.messaging.channels import MiniProgramSubscribeChannel, SmsChannel, channels, default_sms_provider
from app.domain.messaging.wechat_keywords import KeywordValueError, check_mapping, value_for
from tests.messaging.conftest import CARE_TEMPLATE, SUBSCRIBE_TEMPLATE, deliver, member, pending_sends, template
from tests.messaging.test_messaging import FakeMiniProgram, consents, message


async def _openid(session, tenant, member) -> str:
    return "o-openid-1"


@pytest.mark.parametrize(("keyword", "value", "sent"), [
    ("thing1", "肩颈推拿调理（九十分钟全身深度放松舒缓套餐）", "肩颈推拿调理（九十分钟全身深度放松舒缓…"),
    ("thing1", "艾灸", "艾灸"),
    ("number2", "12.5", "12.5"),
    ("letter3", "ABCabc", "ABCabc"),
    ("symbol4", "#-+", "#-+"),
    ("character_string5", "NO.2026-0001_A", "NO.2026-0001_A"),
    ("time6", "2026-12-01 10:00", "2026-12-01 10:00"),
    ("time6", "15:01", "15:01"),
    ("time6", "2019年10月1日 15:01~16:30", "2019年10月1日 15:01~16:30"),
    ("date7", "2019年10月1日", "2019年10月1日"),
    ("date7", "2026-12-01", "2026-12-01"),
    ("amount8", "¥128.00", "¥128.00"),
    ("amount8", "128元", "128元"),
    ("phone_number9", "+86-0766-66888866", "+86-0766-66888866"),
    ("car_number10", "粤A8Z888挂", "粤A8Z888挂"),
    ("name11", "欧阳娜娜", "欧阳娜娜"),
    ("name11", "Anna Smith", "Anna Smith"),
    ("phrase12", "配送中", "配送中"),
])
def test_values_that_follow_the_rules_are_sent_as_they_are(keyword, value, sent):
    assert value_for(keyword, value) == sent


@pytest.mark.parametrize(("keyword", "value"), [
    ("thing1", ""),
    ("number2", "1234567890123456789012345678901234"),  # 34 digits: cutting would change the number
    ("number2", "12次"),
    ("letter3", "ABC123"),
    ("symbol4", "#-+*/%"),
    ("symbol4", "a#"),
    ("character_string5", "AB-1234567890123456789012345678901234"),
    ("character_string5", "订单123"),
    ("time6", "明天上午"),
    ("time6", "2026-12-01"),
    ("date7", "下周一"),
    ("amount8", "约128元"),
    ("amount8", "¥12345678901"),
    ("phone_number9", "138 0013 8000 转 8"),
    ("phone_number9", "+86-0766-668888669999"),
    ("car_number10", "粤A8Z888挂12"),
    ("car_number10", "粤A-8Z888"),
    ("name11", "欧阳娜娜欧阳娜娜欧阳娜娜"),
    ("name11", "Anna Smith Johnson Williams"),
    ("phrase12", "预约已经确认了"),
    ("phrase12", "OK了"),
])
def test_values_that_break_the_rules_are_refused_not_cut(keyword, value):
    with pytest.raises(KeywordValueError) as refused:
        value_for(keyword, value)
    assert refused.value.keyword == keyword and "…" not in str(refused.value)


@pytest.mark.parametrize(("keyword", "text"), [
    ("number1", "第{{n}}次"), ("phrase2", "预约已经确认了"), ("phrase2", "{{status}}已经确认了"),
    ("letter3", "{{code}}-x"), ("time4", "明天{{time}}"), ("amount5", "约{{price}}"), ("thing6", ""),
    ("thing6", "这是一个超过二十个字的固定提示内容请注意事项"), ("symbol7", "{{a}}{{b}}{{c}}{{d}}{{e}}{{f}}"),
    ("car_number8", "京{{plate}}-"), ("enumx9", "{{x}}"), ("keyword1", "{{x}}"),
])
def test_mappings_that_can_never_be_sent_are_refused(keyword, text):
    with pytest.raises(KeywordValueError):
        check_mapping(keyword, text)


async def test_template_with_an_unsendable_keyword_mapping_is_422_naming_the_field(kit):
    for keyword, text in (("phrase4", "预约已经确认了"), ("number4", "第{{time}}次"), ("time2", "明天上午")):
        body = {**SUBSCRIBE_TEMPLATE, "wechat_fields": {**SUBSCRIBE_TEMPLATE["wechat_fields"], keyword: text}}
        r = await kit.post("/message-templates", body)
        assert r.status_code == 422, r.text
        assert [e["field"] for e in r.json()["errors"]] == [f"wechat_fields.{keyword}"], r.text
    await template(kit, SUBSCRIBE_TEMPLATE)
    r = await kit.client.patch("/api/v1/message-templates/appointment_reminder",
                               json={"wechat_fields": {"thing1": "{{service}}", "phrase3": "已预约成功了哦"}},
                               headers=kit.auth())
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "wechat_fields.phrase3", r.text


async def test_a_value_wechat_would_refuse_is_skipped_with_a_reason_not_sent(kit):
    await template(kit, {**SUBSCRIBE_TEMPLATE, "key": "order_notice", "variables": ["order_no", "service", "status"],
                         "body": "订单{{order_no}}：{{service}}{{status}}",
                         "wechat_fields": {"character_string1": "{{order_no}}", "thing2": "{{service}}",
                                           "phrase3": "{{status}}"}})
    member_id = await member(kit)
    r = await kit.post(f"/members/{member_id}/message-consents", {"template_ids": ["tmpl-reminder-001"]})
    assert r.status_code == 200, r.text
    fake = FakeMiniProgram([0])
    with channels.override(MiniProgramSubscribeChannel(client_factory=lambda: fake, openid_lookup=_openid)):
        bad = (await kit.post("/messages", {"template_key": "order_notice", "member_id": member_id, "variables": {
            "order_no": "CL-2026120110000000000000000000000001", "service": "艾灸", "status": "已完成"}})).json()
        assert (bad["status"], bad["reason"]) == ("skipped", "invalid_wechat_value"), bad
        assert "character_string1" in bad["last_error"] and bad["next_attempt_at"] is None
        assert await consents(kit, member_id) == {"tmpl-reminder-001": 1}  # the consent is not used up
        assert await pending_sends(kit.tenant_id) == []

        ok = (await kit.post("/messages", {"template_key": "order_notice", "member_id": member_id, "variables": {
            "order_no": "CL-20261201-0001", "service": "肩颈推拿调理（九十分钟全身深度放松舒缓套餐）",
            "status": "已完成"}})).json()
        await deliver(kit.tenant_id)
    assert (await message(kit, ok["id"]))["status"] == "sent"
    [(_, _, data, _)] = fake.calls
    assert data == {"character_string1": "CL-20261201-0001", "thing2": "肩颈推拿调理（九十分钟全身深度放松舒缓…",
                    "phrase3": "已完成"}


async def test_sms_without_a_gateway_is_recorded_as_not_sent(kit, monkeypatch):
    from app.core.settings import get_settings

    monkeypatch.setattr(get_settings(), "sms_gateway_url", None)
    await template(kit, CARE_TEMPLATE)
    member_id = await member(kit)
    with channels.override(SmsChannel(default_sms_provider())):
        queued = (await kit.post("/messages", {"template_key": "care_after_service", "member_id": member_id,
                                               "variables": {"name": "张三", "service": "艾灸"}})).json()
        await deliver(kit.tenant_id)
    row = await message(kit, queued["id"])
    assert (row["status"], row["reason"], row["sent_at"]) == ("skipped", "no_sms_gateway", None), row
    timeline = (await kit.get(f"/members/{member_id}/timeline", params={"type": "message"})).json()["items"]
    assert [i["data"]["status"] for i in timeline] == ["skipped"] and timeline[0]["data"]["sent_at"] is None
    assert UUID(row["id"])
