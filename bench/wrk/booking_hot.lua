-- Booking, hot slot: every connection POSTs the same therapist and start; the slot moves on every
-- data.round_seconds (a round), so each round is one contest with exactly one winner expected.
-- tallies["round_<r>"] counts the requests sent for round r (checked against the database afterwards).
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local sent = 0

function init(args)
   start_thread()
end

function request()
   local round = math.floor((os.time() - data.t0) / data.round_seconds)
   if round < 0 then round = 0 end
   if round >= #data.rounds then round = #data.rounds - 1 end
   local slot = data.rounds[round + 1]
   local member = data.members[(sent % #data.members) + 1]
   sent = sent + 1
   local key = "round_" .. round
   tallies[key] = (tallies[key] or 0) + 1
   local body = '{"member_id":"' .. member .. '","store_id":"' .. data.store .. '","service_id":"' ..
      data.service .. '","staff_id":"' .. slot[1] .. '","starts_at":"' .. slot[2] .. '","channel":"front_desk"}'
   return wrk.format("POST", "/api/v1/appointments", json_headers(), body)
end

response = count_status
