-- Order paid with stored value: POST /api/v1/orders, one service line, paid in full from a member's
-- stored-value card (data.payers: {member, card}; round robin, so concurrent orders rarely share a card).
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local sent = 0

function init(args)
   start_thread()
end

function request()
   local payer = data.payers[((sent * data.threads + thread_no - 1) % #data.payers) + 1]
   sent = sent + 1
   local body = '{"member_id":"' .. payer[1] .. '","store_id":"' .. data.store .. '","lines":[{"type":"service",' ..
      '"service_id":"' .. data.service .. '"}],"payments":[{"method":"stored_value","amount":' .. data.price ..
      ',"card_id":"' .. payer[2] .. '"}]}'
   return wrk.format("POST", "/api/v1/orders", json_headers(), body)
end

response = count_status
