"""Run every benchmark: `python -m bench` (or `make bench`)."""

import asyncio

from bench import members_search

asyncio.run(members_search.run(100_000))
