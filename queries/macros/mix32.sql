-- mix32: a 32-bit integer hash, the bootstrap's source of randomness (attnstore/stats.py).
--
-- Two rounds of xor-shift and multiply by 0x45d9f3b (73244475), each kept to 32 bits, then a
-- last xor-shift: h ^= h >> 16; h = h * 0x45d9f3b mod 2^32 (twice); h ^= h >> 16. Every
-- product stays below 2^59, so BIGINT never overflows. attnstore.stats.mix32 is the same
-- function in numpy; a test holds the two equal.
--
-- Arguments:
--   h                    a BIGINT in 0 .. 2^32 - 1
-- Returns: a BIGINT in 0 .. 2^32 - 1.
create macro mix32(h) as
    xor(
        (xor((xor(h, h >> 16) * 73244475) % 4294967296,
            ((xor(h, h >> 16) * 73244475) % 4294967296) >> 16) * 73244475) % 4294967296,
        ((xor((xor(h, h >> 16) * 73244475) % 4294967296,
            ((xor(h, h >> 16) * 73244475) % 4294967296) >> 16) * 73244475) % 4294967296) >> 16
    )
