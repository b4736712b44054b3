-- Vantage's baseline hash for HAProxy: MurmurHash2 (32 bits, seed 0) of a string, exactly as nginx's
-- split_clients (ngx_murmur_hash2) and the Go router (router.MurmurHash2) compute it, so that a request id is
-- in the baseline behind every front or behind none. Load it with `lua-load` in the global section and use it
-- as a converter: req.fhdr(cf-ray,1),lua.vantage_murmur2 (an integer in [0, 2^32)).
-- Lua 5.3 integers are 64-bit: a product of two 32-bit values wraps, and its low 32 bits (& 0xffffffff) are
-- the 32-bit product C computes.
local M = 0x5bd1e995
local MASK = 0xffffffff

local function murmur2(s)
    local len = #s
    local h = len -- seed 0 XOR len
    local i = 1
    while len >= 4 do
        local a, b, c, d = s:byte(i, i + 3)
        local k = a | (b << 8) | (c << 16) | (d << 24)
        k = (k * M) & MASK
        k = k ~ (k >> 24)
        k = (k * M) & MASK
        h = ((h * M) & MASK) ~ k
        i = i + 4
        len = len - 4
    end
    if len == 3 then h = h ~ (s:byte(i + 2) << 16) end
    if len >= 2 then h = h ~ (s:byte(i + 1) << 8) end
    if len >= 1 then h = ((h ~ s:byte(i)) * M) & MASK end
    h = h ~ (h >> 13)
    h = (h * M) & MASK
    h = h ~ (h >> 15)
    return h
end

core.register_converters("vantage_murmur2", function(s) return murmur2(tostring(s)) end)
