//! The shared backend: the same GCRA decision as governor's, made inside Redis by one Lua script,
//! so it is atomic and every replica counts against the same cells. All the policies of one
//! request go in one script call (one round trip), and time is Redis's own clock, so replicas with
//! skewed clocks still agree.
//!
//! A cell stores its theoretical arrival time (TAT, microseconds) and expires when the TAT is
//! reached, at which point it would be indistinguishable from a fresh cell anyway.

use std::time::Duration;

use redis::Script;

use super::decision::Decision;
use crate::config::PolicyConfig;
use crate::store::{RedisStore, StoreError};

/// KEYS: one cell per policy. ARGV: per policy, the emission interval and the burst. Returns, per
/// policy, `allowed (0|1), remaining, microseconds` where the microseconds are the wait when
/// refused and the time until fully refilled when allowed.
const GCRA: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local out = {}
for i, key in ipairs(KEYS) do
  local interval = tonumber(ARGV[2 * i - 1])
  local capacity = interval * tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', key) or now)
  if tat < now then tat = now end
  local next_tat = tat + interval
  local allow_at = next_tat - capacity
  if now < allow_at then
    table.insert(out, 0)
    table.insert(out, 0)
    table.insert(out, allow_at - now)
  else
    redis.call('SET', key, string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000))
    table.insert(out, 1)
    table.insert(out, math.floor((capacity - (next_tat - now)) / interval))
    table.insert(out, next_tat - now)
  end
end
return out
";

pub struct RedisLimiter {
    store: RedisStore,
    script: Script,
}

impl RedisLimiter {
    pub fn new(store: RedisStore) -> Self {
        Self {
            store,
            script: Script::new(GCRA),
        }
    }

    /// One decision per `(policy, key)`, in order.
    ///
    /// # Errors
    /// Redis cannot answer (see `store::RedisStore::eval`).
    pub async fn check(&self, cells: &[(&PolicyConfig, String)]) -> Result<Vec<Decision>, StoreError> {
        let keys: Vec<String> = cells
            .iter()
            .map(|(p, key)| self.store.key(&format!("rl:{}:{key}", p.name)))
            .collect();
        let args: Vec<i64> = cells
            .iter()
            .flat_map(|(p, _)| [micros(p.interval()), i64::from(p.burst)])
            .collect();
        let out: Vec<i64> = self.store.eval(&self.script, &keys, &args).await?;
        if out.len() != cells.len() * 3 {
            return Err(StoreError::Redis(format!(
                "rate-limit script returned {} values for {} policies",
                out.len(),
                cells.len()
            )));
        }
        Ok(out
            .chunks_exact(3)
            .map(|c| Decision {
                allowed: c[0] == 1,
                remaining: u32::try_from(c[1]).unwrap_or(0),
                reset: Duration::from_micros(u64::try_from(c[2]).unwrap_or(0)),
            })
            .collect())
    }
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
