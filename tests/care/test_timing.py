"""When a run executes: delay, store-local "at", quiet hours (pure functions, explicit instants)."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from app.domain.care.engine import apply_delay, apply_quiet_hours, run_time
from app.domain.care.schemas import Delay, QuietHours, parse_rule_parts

SH = ZoneInfo("Asia/Shanghai")
NIGHT = QuietHours(start="21:00", end="09:00")


def at(day: int, hh: int, mm: int = 0, zone: ZoneInfo = SH) -> datetime:
    return datetime(2026, 12, day, hh, mm, tzinfo=zone)


def test_delay_in_minutes_and_at_a_local_time():
    assert apply_delay(at(1, 14, 30), Delay(minutes=1440), SH) == at(2, 14, 30)
    # "at 10:00": the same day when still ahead, else the next day
    assert apply_delay(at(1, 8), Delay(at="10:00"), SH) == at(1, 10)
    assert apply_delay(at(1, 15), Delay(at="10:00"), SH) == at(2, 10)
    # "3 days after, at 10:00" is the third local day, whatever the hour of the cause
    assert apply_delay(at(1, 16), Delay(days=3, at="10:00"), SH) == at(4, 10)
    # local means the store's zone: 10:00 in Urumqi-time stores is 12:00 in Shanghai
    assert apply_delay(at(1, 8), Delay(at="10:00"), ZoneInfo("Asia/Urumqi")) == at(1, 12)


def test_quiet_hours_defer_to_their_end_also_across_midnight():
    assert apply_quiet_hours(at(1, 22, 15), NIGHT, SH) == at(2, 9)
    assert apply_quiet_hours(at(2, 3), NIGHT, SH) == at(2, 9)
    assert apply_quiet_hours(at(2, 9), NIGHT, SH) == at(2, 9)
    assert apply_quiet_hours(at(2, 20, 59), NIGHT, SH) == at(2, 20, 59)
    lunch = QuietHours(start="12:00", end="14:00")
    assert apply_quiet_hours(at(2, 12, 30), lunch, SH) == at(2, 14)
    assert apply_quiet_hours(at(2, 14), lunch, SH) == at(2, 14)


def test_run_time_is_never_in_the_past_and_then_leaves_quiet_hours():
    parts = parse_rule_parts({"type": "event", "topic": "service.completed"}, {}, {"minutes": 1440},
                             {"start": "21:00", "end": "09:00"}, [{"type": "add_tag", "tag": "x"}])
    assert run_time(at(1, 22, 15), parts, SH, now=at(1, 22, 16)) == at(3, 9)  # 24 h later is 22:15: quiet
    assert run_time(at(1, 14), parts, SH, now=at(1, 14)) == at(2, 14)
    # a cause handled late (the worker was down) runs now, or at the end of the quiet hours
    assert run_time(at(1, 14), parts, SH, now=at(5, 23)) == at(6, 9)
    assert run_time(at(1, 14), parts, SH, now=at(5, 11)) == at(5, 11)
    assert at(5, 11) - timedelta(hours=1) < run_time(at(1, 14), parts, SH, now=at(5, 11))
