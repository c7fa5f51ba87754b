//! The Redis store: one multiplexed connection (`ConnectionManager`, which reconnects by itself)
//! shared by every request, a timeout on each call, and a health flag fed by every call plus a
//! once-a-second probe. Failures are logged at most once per [`LOG_INTERVAL`], with the count of
//! those not logged, so a Redis outage cannot flood the log at request rate.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{FromRedisValue, RedisResult, Script, ToRedisArgs};

use super::error::StoreError;
use super::memory::MemoryStore;
use super::receipt::BudgetGrant;
use crate::config::{OnStoreError, Secret, StoreConfig};

const LOG_INTERVAL: Duration = Duration::from_secs(10);
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Deletes a key only while it still holds the caller's token, so a lock that expired and was
/// taken by someone else is never released by its former owner.
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// Takes ARGV[1] units at once, or none, from the current window of a budget of ARGV[2] units per
/// ARGV[3] milliseconds. Windows are numbered on Redis's clock (so replicas with skewed clocks
/// agree) and each counts in its own key, KEYS[1] followed by `:<number>`, which expires when the
/// window ends. That key is built here, which is one reason Redis Cluster is not supported.
/// Returns `granted (0|1), window number, milliseconds left in the window`.
const BUDGET_TAKE: &str = r"
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
local length = tonumber(ARGV[3])
local number = math.floor(now / length)
local left = (number + 1) * length - now
local key = KEYS[1] .. ':' .. string.format('%d', number)
local used = tonumber(redis.call('GET', key) or '0')
if used + tonumber(ARGV[1]) > tonumber(ARGV[2]) then
  return {0, number, left}
end
redis.call('INCRBY', key, ARGV[1])
redis.call('PEXPIRE', key, left)
return {1, number, left}
";

/// Gives back up to ARGV[1] units to the window counted in KEYS[1] (never below zero). A window
/// that has ended has no key any more, and then nothing happens.
const BUDGET_REFUND: &str = r"
local used = tonumber(redis.call('GET', KEYS[1]))
if not used then
  return 0
end
local back = math.min(used, tonumber(ARGV[1]))
if back > 0 then
  redis.call('DECRBY', KEYS[1], back)
end
return back
";

#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    timeout: Duration,
    prefix: String,
    on_store_error: OnStoreError,
    health: Health,
    unlock: Script,
    budget_take: Script,
    budget_refund: Script,
    /// Used for the Persona budget while Redis is unreachable and errors are allowed.
    fallback: MemoryStore,
}

impl RedisStore {
    pub(super) fn connect(url: &Secret, config: &StoreConfig) -> Result<RedisStore, StoreError> {
        let client = redis::Client::open(url.expose()).map_err(|e| StoreError::Redis(e.to_string()))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(config.timeout))
            .set_response_timeout(Some(config.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, manager_config)
            .map_err(|e| StoreError::Redis(e.to_string()))?;
        let inner = Arc::new(Inner {
            conn,
            timeout: config.timeout,
            prefix: config.key_prefix.clone(),
            on_store_error: config.on_store_error,
            health: Health::new(),
            unlock: Script::new(UNLOCK),
            budget_take: Script::new(BUDGET_TAKE),
            budget_refund: Script::new(BUDGET_REFUND),
            fallback: MemoryStore::new(1),
        });
        tokio::spawn(probe(Arc::downgrade(&inner)));
        Ok(RedisStore { inner })
    }

    pub fn healthy(&self) -> bool {
        self.inner.health.healthy.load(Ordering::Relaxed)
    }

    pub fn on_store_error(&self) -> OnStoreError {
        self.inner.on_store_error
    }

    /// The configured prefix joined to `key`.
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.inner.prefix)
    }

    /// Runs `script` (EVALSHA, loading it on first use) with already-prefixed `keys`.
    ///
    /// # Errors
    /// Redis is unreachable, answers with an error, or does not answer within the timeout.
    pub async fn eval<T: FromRedisValue, A: ToRedisArgs>(
        &self,
        script: &Script,
        keys: &[String],
        args: &[A],
    ) -> Result<T, StoreError> {
        let mut invocation = script.prepare_invoke();
        for key in keys {
            invocation.key(key);
        }
        for arg in args {
            invocation.arg(arg);
        }
        let mut conn = self.inner.conn.clone();
        self.call(async move { invocation.invoke_async(&mut conn).await }).await
    }

    pub(super) async fn set_if_absent(&self, key: &str, value: &str, ttl: Duration) -> Result<bool, StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value).arg("NX").arg("PX").arg(millis(ttl));
        let set: Option<String> = self.query(cmd).await?;
        Ok(set.is_some())
    }

    pub(super) async fn remove_if(&self, key: &str, value: &str) -> Result<bool, StoreError> {
        let removed: i64 = self.eval(&self.inner.unlock, &[self.key(key)], &[value]).await?;
        Ok(removed == 1)
    }

    pub(super) async fn remove(&self, keys: &[String]) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("DEL");
        for key in keys {
            cmd.arg(self.key(key));
        }
        let _: i64 = self.query(cmd).await?;
        Ok(())
    }

    pub(super) async fn put(&self, key: &str, value: &str, ttl: Duration) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(self.key(key)).arg(value).arg("PX").arg(millis(ttl));
        let _: Option<String> = self.query(cmd).await?;
        Ok(())
    }

    pub(super) async fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.key(key));
        self.query(cmd).await
    }

    pub(super) async fn budget_take(
        &self,
        name: &str,
        units: u32,
        limit: u32,
        window: Duration,
    ) -> Result<BudgetGrant, Duration> {
        let keys = [self.key(&format!("budget:{name}"))];
        let args = [i64::from(units), i64::from(limit), millis(window)];
        match self
            .eval::<(i64, u64, u64), i64>(&self.inner.budget_take, &keys, &args)
            .await
        {
            Ok((granted, number, left)) => {
                let remaining = Duration::from_millis(left);
                if granted == 1 {
                    Ok(BudgetGrant {
                        window: number,
                        remaining,
                        local: false,
                    })
                } else {
                    Err(remaining)
                }
            }
            Err(_) => match self.inner.on_store_error {
                OnStoreError::Allow => self.inner.fallback.budget_take(name, units, limit, window),
                OnStoreError::Deny => Err(Duration::from_secs(1)),
            },
        }
    }

    pub(super) async fn budget_refund(&self, name: &str, grant: &BudgetGrant, units: u32) -> Result<(), StoreError> {
        if grant.local {
            self.inner.fallback.budget_refund(name, grant, units);
            return Ok(());
        }
        let keys = [self.key(&format!("budget:{name}:{}", grant.window))];
        let _: i64 = self.eval(&self.inner.budget_refund, &keys, &[units]).await?;
        Ok(())
    }

    async fn query<T: FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, StoreError> {
        let mut conn = self.inner.conn.clone();
        self.call(async move { cmd.query_async(&mut conn).await }).await
    }

    /// Every Redis round trip goes through here: the timeout, the health flag and the log.
    async fn call<T>(&self, fut: impl Future<Output = RedisResult<T>>) -> Result<T, StoreError> {
        let result = match tokio::time::timeout(self.inner.timeout, fut).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(StoreError::Redis(e.to_string())),
            Err(_) => Err(StoreError::Timeout(self.inner.timeout)),
        };
        match &result {
            Ok(_) => self.inner.health.up(),
            Err(e) => self.inner.health.down(e),
        }
        result
    }
}

/// Keeps the health flag current when no request is touching Redis, and lets `/readyz` notice
/// both the outage and the recovery.
async fn probe(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(PROBE_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let store = RedisStore { inner };
        let _: Result<String, _> = store.query(redis::cmd("PING")).await;
    }
}

struct Health {
    healthy: AtomicBool,
    started: Instant,
    /// Milliseconds after `started` of the last logged failure; `u64::MAX` for never.
    last_logged: AtomicU64,
    suppressed: AtomicU64,
}

impl Health {
    fn new() -> Self {
        Self {
            healthy: AtomicBool::new(true),
            started: Instant::now(),
            last_logged: AtomicU64::new(u64::MAX),
            suppressed: AtomicU64::new(0),
        }
    }

    fn up(&self) {
        if !self.healthy.swap(true, Ordering::Relaxed) {
            tracing::info!("store: redis is reachable again");
        }
    }

    fn down(&self, error: &StoreError) {
        crate::metrics::store_error(error.kind());
        let was_healthy = self.healthy.swap(false, Ordering::Relaxed);
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX - 1);
        let last = self.last_logged.load(Ordering::Relaxed);
        let due = was_healthy || last == u64::MAX || now.saturating_sub(last) >= millis_u64(LOG_INTERVAL);
        if due
            && self
                .last_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
            tracing::warn!(%error, suppressed, "store: redis unavailable; applying store.on_store_error");
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX).max(1)
}

fn millis_u64(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
