-- wrk's share of BENCHMARKS.md: the 80/20 mix of the original's k6 test
-- (4 of 5 requests post one event, 1 reads a tenant's usage), over the
-- load generator's default tenants and features, authenticated with
-- FLAGMETER_API_KEY. The same script drives nginx's static reply, so that
-- both figures pay for the same requests.
local tenants = { "acme-corp", "globex-inc", "initech-llc" }
local features = { "gpt-4o", "claude-3-opus", "gpt-4-turbo" }
local key = os.getenv("FLAGMETER_API_KEY") or ""
local n = 0

request = function()
  n = n + 1
  local tenant = tenants[n % #tenants + 1]
  local headers = { ["Authorization"] = "Bearer " .. key }
  if n % 5 == 0 then
    return wrk.format("GET", "/api/usage/" .. tenant, headers)
  end
  headers["Content-Type"] = "application/json"
  local body = string.format('{"tenant":"%s","feature":"%s","tokens":%d}',
    tenant, features[n % #features + 1], n % 1000 + 1)
  return wrk.format("POST", "/api/events", headers, body)
end
