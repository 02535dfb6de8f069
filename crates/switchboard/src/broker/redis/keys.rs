//! Topic names as Redis keys and channels, the publish script, and the wire
//! form of a live message. Keys are binary-safe, so a topic goes in as it
//! is, behind the `sb:` prefix; `{topic}` is a hash tag, so one topic's keys
//! share a cluster slot. Channels are subscribed by exact name, never by
//! pattern, so no topic can match another's.

use switchboard_protocol::Topic;

/// The epoch: set once with SET NX; gone (or different) when the store was lost.
pub const EPOCH_KEY: &str = "sb:epoch";
/// Set with the epoch: one millisecond past Redis's clock at that moment.
/// A log created in this epoch starts at or after it, so its ids are later
/// than every id of a lost store, even one lost in the same millisecond.
pub const FLOOR_KEY: &str = "sb:floor";
pub const CHANNEL_PREFIX: &str = "sb:live:";

/// The topic's history: a Redis stream; entries hold `d` (data), `k` (dedup
/// key, if any) and `h` (publish hop, if not 0).
pub fn log_key(topic: &Topic) -> String {
    format!("sb:{{{}}}:log", topic.as_str())
}

/// `last` (newest id ever), `cut` (newest id trimmed away), `bytes` (of the log's data).
pub fn meta_key(topic: &Topic) -> String {
    format!("sb:{{{}}}:meta", topic.as_str())
}

/// The id answered for a (topic, dedup_key) within the dedup window.
pub fn dedup_key(topic: &Topic, key: &str) -> String {
    format!("sb:{{{}}}:dedup:{key}", topic.as_str())
}

pub fn channel(topic: &Topic) -> String {
    format!("{CHANNEL_PREFIX}{}", topic.as_str())
}

pub fn topic_of_channel(channel: &str) -> Option<Topic> {
    Topic::new(channel.strip_prefix(CHANNEL_PREFIX)?).ok()
}

/// Sets a new epoch (and its floor) unless one is set; answers the epoch.
///
/// KEYS: epoch, floor. ARGV: a fresh epoch.
pub const EPOCH_SCRIPT: &str = r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('SET', KEYS[2], string.format('%d', ms + 1))
end
return redis.call('GET', KEYS[1])
"#;

/// The error code the publish script answers when the epoch is not the
/// caller's: the store was lost and this node has not reconnected yet.
pub const EPOCH_MISMATCH: &str = "SBEPOCH";

/// Publishes one message atomically: epoch check, dedup check, XADD, trim to
/// the history bounds (count, bytes, age; the newest always stays), remember
/// `last` and `cut`, and PUBLISH `id klen[/hop] key data` to the topic's
/// channel (`/hop` only when the hop is not 0).
/// Scripts run one at a time, so ids reach every subscriber in id order.
///
/// A new log's first id is explicit: no earlier than the epoch's floor and
/// past the topic's `last`, so ids keep increasing across a lost store.
///
/// KEYS: log, meta, epoch, floor[, dedup]. ARGV: data, dedup key or "",
/// channel, max messages, max bytes, max age ms, dedup window ms, meta ttl
/// ms, the caller's epoch, the message's hop.
pub const PUBLISH_SCRIPT: &str = r#"
local log, meta = KEYS[1], KEYS[2]
local data, key, channel = ARGV[1], ARGV[2], ARGV[3]
local max_n, max_b, max_age = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if redis.call('GET', KEYS[3]) ~= ARGV[9] then
  return redis.error_reply('SBEPOCH the store was lost; reconnecting')
end
if KEYS[5] then
  local first = redis.call('GET', KEYS[5])
  if first then return first end
end
local xid = '*'
if redis.call('EXISTS', log) == 0 then
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local floor = tonumber(redis.call('GET', KEYS[4]) or '0') or 0
  if floor > ms then ms = floor end
  local prev = redis.call('HGET', meta, 'last')
  local prev_ms = prev and tonumber(string.match(prev, '^(%d+)'))
  if prev_ms and prev_ms >= ms then ms = prev_ms + 1 end
  xid = string.format('%d-0', ms)
end
local hop = ARGV[10]
local fields = {'d', data}
if key ~= '' then
  table.insert(fields, 'k')
  table.insert(fields, key)
end
local klen = tostring(#key)
if hop ~= '0' then
  table.insert(fields, 'h')
  table.insert(fields, hop)
  klen = klen .. '/' .. hop
end
local id = redis.call('XADD', log, xid, unpack(fields))
local len = redis.call('XLEN', log)
local bytes
if len == 1 then
  -- A new log: an older one expired whole, so everything before is gone.
  local prev = redis.call('HGET', meta, 'last')
  if prev then redis.call('HSET', meta, 'cut', prev) end
  bytes = #data
else
  bytes = tonumber(redis.call('HGET', meta, 'bytes') or '0') + #data
end
local now_ms = tonumber(string.match(id, '^(%d+)'))
local cut = nil
while len > 1 do
  local oldest = redis.call('XRANGE', log, '-', '+', 'COUNT', 1)[1]
  if not (len > max_n or bytes > max_b) then
    local oldest_ms = tonumber(string.match(oldest[1], '^(%d+)'))
    if now_ms - oldest_ms <= max_age then break end
  end
  redis.call('XDEL', log, oldest[1])
  bytes = bytes - #oldest[2][2]
  len = len - 1
  cut = oldest[1]
end
if cut then redis.call('HSET', meta, 'cut', cut) end
redis.call('HSET', meta, 'last', id, 'bytes', bytes)
redis.call('PEXPIRE', log, max_age)
redis.call('PEXPIRE', meta, ARGV[8])
if KEYS[5] then redis.call('SET', KEYS[5], id, 'PX', ARGV[7]) end
redis.call('PUBLISH', channel, id .. ' ' .. klen .. ' ' .. key .. data)
return id
"#;

/// A live message as published by [`PUBLISH_SCRIPT`].
#[derive(Debug, PartialEq, Eq)]
pub struct Live<'a> {
    pub id: &'a str,
    pub dedup_key: Option<&'a str>,
    pub data: &'a str,
    pub hop: u8,
}

/// Reads `id klen[/hop] key data`; None if the payload has another shape.
pub fn parse_live(payload: &[u8]) -> Option<Live<'_>> {
    let text = std::str::from_utf8(payload).ok()?;
    let (id, rest) = text.split_once(' ')?;
    let (klen, rest) = rest.split_once(' ')?;
    let (klen, hop) = match klen.split_once('/') {
        Some((k, h)) => (k, h.parse().ok()?),
        None => (klen, 0),
    };
    let klen: usize = klen.parse().ok()?;
    let key = rest.get(..klen)?;
    let data = rest.get(klen..)?;
    Some(Live {
        id,
        dedup_key: (klen > 0).then_some(key),
        data,
        hop,
    })
}

/// `(` + the id in stream-id form: an exclusive XRANGE start.
pub fn exclusive_start(order: (u64, u64)) -> String {
    format!("({}-{}", order.0, order.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_publish_script_refuses_with_the_code_the_broker_looks_for() {
        let refusal = format!("redis.error_reply('{EPOCH_MISMATCH} ");
        assert!(PUBLISH_SCRIPT.contains(&refusal), "{refusal}");
    }

    #[test]
    fn keys_share_a_hash_tag_and_channels_roundtrip() {
        let t = Topic::new("live_video_comment/1234").unwrap();
        assert_eq!(log_key(&t), "sb:{live_video_comment/1234}:log");
        assert_eq!(meta_key(&t), "sb:{live_video_comment/1234}:meta");
        assert_eq!(
            dedup_key(&t, "a b"),
            "sb:{live_video_comment/1234}:dedup:a b"
        );
        assert_eq!(topic_of_channel(&channel(&t)), Some(t));
        assert_eq!(topic_of_channel("other:x"), None);
    }

    #[test]
    fn live_payloads_parse() {
        assert_eq!(
            parse_live(b"1700-0 0 {\"a\":1}"),
            Some(Live {
                id: "1700-0",
                dedup_key: None,
                data: "{\"a\":1}",
                hop: 0,
            })
        );
        assert_eq!(
            parse_live(b"1700-3 3/7 k 1[1]").map(|l| (l.dedup_key, l.data, l.hop)),
            Some((Some("k 1"), "[1]", 7))
        );
        assert_eq!(parse_live(b"1700-3 0/300 [1]"), None, "a hop is a u8");
        assert_eq!(
            parse_live(b"1700-3 3 k 1[1]").map(|l| (l.dedup_key, l.data)),
            Some((Some("k 1"), "[1]"))
        );
        assert_eq!(parse_live(b"1700-0"), None);
        assert_eq!(parse_live(b"1700-0 9 ab"), None);
        assert_eq!(exclusive_start((5, 0)), "(5-0");
    }
}
