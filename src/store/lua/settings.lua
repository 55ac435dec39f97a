-- Settings prelude: prepended after lib.lua to the scripts that write an
-- event's settings (create_event, patch_event), so that the scripts run on
-- every hold do not define what they never call.

-- The `sell` field for these settings, or nil when all are defaults
-- (`counting`: a recount of buyers' tickets is under way, see load_meta).
local function sell_text(currency, max_user, sales_start, sales_end, max_ext, counting)
  if currency == 'EUR' and max_user == 0 and not sales_start and not sales_end and max_ext == 0
    and not counting then
    return nil
  end
  local function opt(n) return n and string.format('%d', n) or '' end
  return table.concat({ currency, max_user > 0 and opt(max_user) or '', opt(sales_start), opt(sales_end),
                        max_ext > 0 and opt(max_ext) or '' }, '|') .. (counting and '|c' or '')
end

-- Writes the `sell` field for these settings (or removes it).
local function write_sell(currency, max_user, sales_start, sales_end, max_ext, counting)
  local text = sell_text(currency, max_user, sales_start, sales_end, max_ext, counting)
  if text then
    redis.call('HSET', K.meta, 'sell', text)
  else
    redis.call('HDEL', K.meta, 'sell')
  end
  settings_changed()
end

