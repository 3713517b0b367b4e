-- A fixed GET (data.path) with the bearer token, if any: wrk builds the request once.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")

wrk.method = "GET"
wrk.path = data.path
if data.token then wrk.headers["Authorization"] = "Bearer " .. data.token end

function init(args)
   start_thread()
end

response = count_status
