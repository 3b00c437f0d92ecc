"""How many chunks of a queued run have written their part, counted in the broker.

Each chunk's task, once its part is written, sets its chunk's bit in a bitmap and, when
the bit was not set already, adds one to the run's count, in one Lua script (atomic in
Redis): a redelivered or re-queued chunk never counts twice. The task that brings the
count to the number of chunks reads the parts, once, and finalises when every one is
complete (jobs.runs.parts): so no chunk lists the run's parts, and the count is only
ever a hint to look. A count that is lost (a Redis restart without its file, keys
evicted) stays short and the run is finalised by the workers' sweep or ``jobs wait``,
which find its parts all written, as before; a count that runs ahead of the parts (a
part set aside as damaged after it counted) finds a part missing and finalises nothing.

Publishing a chunk again (a resume, the sweeper) clears its bit first, so the count says
"chunks written since they were last sent". Both keys expire a week after their last
change, and go once the run is finalised.
"""

from __future__ import annotations

DONE_PREFIX = "anigenre:run:done:"  # the bitmap: bit i set once chunk i's part is written
COUNT_PREFIX = "anigenre:run:count:"  # how many bits are set
TTL_S = 7 * 24 * 3600

_MARK = """
local n
if redis.call('SETBIT', KEYS[1], ARGV[1], 1) == 0 then
  n = redis.call('INCR', KEYS[2])
else
  n = tonumber(redis.call('GET', KEYS[2]) or '0')
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return n
"""

_UNMARK = """
local n = 0
for _, index in ipairs(ARGV) do
  if redis.call('SETBIT', KEYS[1], index, 0) == 1 then n = n + 1 end
end
if n > 0 then redis.call('DECRBY', KEYS[2], n) end
return n
"""


def _keys(run_id: str) -> list[str]:
    return [DONE_PREFIX + run_id, COUNT_PREFIX + run_id]


def chunk_written(client, run_id: str, index: int) -> int:
    """Count chunk ``index`` of ``run_id`` as written; how many are, this one included."""
    return int(client.eval(_MARK, 2, *_keys(run_id), index, TTL_S))


def chunks_sent(client, run_id: str, indices: list[int]) -> None:
    """These chunks are being sent again: they count once their new part is written."""
    for start in range(0, len(indices), 10_000):  # a script's arguments, in batches
        client.eval(_UNMARK, 2, *_keys(run_id), *indices[start : start + 10_000])


def written_count(client, run_id: str) -> int:
    return int(client.get(COUNT_PREFIX + run_id) or 0)


def forget(client, run_id: str) -> None:
    """The run is finalised: its count is no longer needed."""
    client.delete(*_keys(run_id))
