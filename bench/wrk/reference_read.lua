-- The read reference: GET /read/{id}, a random row of data.rows each time.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

function init(args)
   start_thread()
end

function request()
   return wrk.format("GET", "/read/" .. math.random(1, data.rows))
end

response = count_status
