-- read_bitmaps: one byte range of an event's taken and sold bitmaps, read at
-- one instant (a listing of held tickets needs both). Read-only; standalone.
-- KEYS[1]: taken bitmap   KEYS[2]: sold bitmap (same event, same slot)
-- ARGV[1]: first byte   ARGV[2]: last byte
-- Returns: { taken bytes, sold bytes }
return { redis.call('GETRANGE', KEYS[1], ARGV[1], ARGV[2]), redis.call('GETRANGE', KEYS[2], ARGV[1], ARGV[2]) }
