-- Booking, spread: POST /api/v1/appointments, every request a different therapist and 15-minute start in
-- the next days (data.slots: {staff, start, member}, shuffled and conflict-free: no two of one therapist or
-- of one member overlap), so each one is a real booking. Thread n takes slots n, n + threads, …; past the
-- end it starts over (then 409s).
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local sent = 0

function init(args)
   start_thread()
end

function request()
   local index = ((sent * data.threads + thread_no - 1) % #data.slots) + 1
   local slot = data.slots[index]
   sent = sent + 1
   local body = '{"member_id":"' .. slot[3] .. '","store_id":"' .. data.store .. '","service_id":"' ..
      data.service .. '","staff_id":"' .. slot[1] .. '","starts_at":"' .. slot[2] .. '","channel":"front_desk"}'
   return wrk.format("POST", "/api/v1/appointments", json_headers(), body)
end

response = count_status
