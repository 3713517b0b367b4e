"""Run every benchmark: `python -m bench` (or `make bench`)."""

import asyncio

from bench import booking_availability, booking_latency, http_ratios, members_search

asyncio.run(members_search.run(100_000))
asyncio.run(booking_availability.run())
asyncio.run(booking_latency.run())
http_ratios.main([])  # over HTTP with wrk, as ratios to the same-stack reference; prints the ratio table
