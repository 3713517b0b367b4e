"""Ids sort in the order they were made within a process, as readers ordering rows by id expect."""

from __future__ import annotations

import time
from unittest import mock

from app.core.ids import new_id


def test_ids_made_in_one_tick_still_increase():
    frozen = time.time_ns()
    with mock.patch("app.core.ids.time.time_ns", return_value=frozen):
        ids = [new_id() for _ in range(1000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert {i.version for i in ids} == {7} and {i.variant for i in ids} == {"specified in RFC 4122"}


def test_a_clock_stepping_back_does_not_reorder_ids():
    first = new_id()
    with mock.patch("app.core.ids.time.time_ns", return_value=time.time_ns() - 60 * 10**9):
        later = new_id()
    assert later > first
