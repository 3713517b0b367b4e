-- The write reference: POST /write, one INSERT and commit each.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

local sent = 0

function init(args)
   start_thread()
end

function request()
   sent = sent + 1
   local body = '{"name":"t' .. thread_no .. '-' .. sent .. '","value":' .. sent .. '}'
   return wrk.format("POST", "/write", json_headers(), body)
end

response = count_status
