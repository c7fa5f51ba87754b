//! `[rate_limit]` section: the policies (`[[rate_limit.policies]]`), the proxies whose
//! `X-Forwarded-For` is believed, idle-key eviction, and the outbound Persona budget.

use std::collections::HashSet;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use super::primitives::parse_duration;
use super::validate::Validator;

#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    pub policies: Vec<PolicyConfig>,
    /// Peers allowed to tell us the client address through `X-Forwarded-For`.
    pub trusted_proxies: Vec<IpNet>,
    /// How often the memory backend drops keys whose limit has fully refilled.
    pub evict_interval: Duration,
    pub persona_budget: Option<BudgetConfig>,
}

/// One GCRA policy: `requests` per `period` sustained, up to `burst` at once.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    /// Also the policy's name in the `RateLimit` / `RateLimit-Policy` header fields.
    pub name: String,
    pub requests: u32,
    pub period: Duration,
    pub burst: u32,
    pub key: PolicyKey,
    /// Path prefixes the policy applies to.
    pub routes: Vec<crate::target::PathPrefix>,
    /// Whether allowed responses carry the `RateLimit` fields too (limited ones always do).
    pub headers: bool,
}

impl PolicyConfig {
    /// The GCRA emission interval: one request is earned back every this long.
    pub fn interval(&self) -> Duration {
        self.period / self.requests.max(1)
    }

    pub fn applies_to(&self, path: &str) -> bool {
        self.routes.iter().any(|r| r.matches(path))
    }
}

/// What a policy counts requests by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyKey {
    /// The verified user id; applies to authenticated requests.
    User,
    /// The client address; applies to anonymous (public path) requests.
    Ip,
    /// A claim of the verified token (e.g. a tenant id); requests without it are not counted.
    Claim(String),
}

/// A fixed-window budget on the gateway's own calls to Persona, shared by every user.
#[derive(Debug, Clone, Copy)]
pub struct BudgetConfig {
    pub requests: u32,
    pub window: Duration,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawRateLimit {
    policies: Vec<RawPolicy>,
    trusted_proxies: Vec<String>,
    evict_interval: String,
    persona_budget: Option<RawBudget>,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        Self {
            policies: Vec::new(),
            trusted_proxies: Vec::new(),
            evict_interval: "60s".into(),
            persona_budget: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    name: String,
    rate: Option<String>,
    requests: Option<u32>,
    period: Option<String>,
    burst: Option<u32>,
    key: String,
    #[serde(default = "all_routes")]
    routes: Vec<String>,
    #[serde(default)]
    headers: bool,
}

fn all_routes() -> Vec<String> {
    vec!["/".into()]
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    requests: u32,
    window: String,
}

impl RawRateLimit {
    pub(super) fn validate(self, v: &mut Validator) -> RateLimitConfig {
        let mut names = HashSet::new();
        let policies = self
            .policies
            .into_iter()
            .enumerate()
            .filter_map(|(i, p)| {
                let key = format!("rate_limit.policies[{i}]");
                if !names.insert(p.name.clone()) {
                    v.problem(format!("{key}.name"), format!("{:?} is used twice", p.name));
                }
                p.validate(v, &key)
            })
            .collect();
        let trusted_proxies = self
            .trusted_proxies
            .iter()
            .enumerate()
            .filter_map(|(i, text)| v.check(&format!("rate_limit.trusted_proxies[{i}]"), parse_net(text)))
            .collect();
        let evict_interval = v.duration("rate_limit.evict_interval", &self.evict_interval);
        if evict_interval.is_zero() {
            v.problem("rate_limit.evict_interval", "must be greater than zero");
        }
        let persona_budget = self.persona_budget.map(|b| {
            let window = v.duration("rate_limit.persona_budget.window", &b.window);
            if window.is_zero() {
                v.problem("rate_limit.persona_budget.window", "must be greater than zero");
            }
            // A get-or-create round reserves its lookup and its create or resume together, so a
            // budget of one would refuse every round.
            if b.requests < 2 {
                v.problem("rate_limit.persona_budget.requests", "must be at least 2");
            }
            BudgetConfig {
                requests: b.requests,
                window,
            }
        });
        RateLimitConfig {
            policies,
            trusted_proxies,
            evict_interval,
            persona_budget,
        }
    }
}

impl RawPolicy {
    fn validate(self, v: &mut Validator, key: &str) -> Option<PolicyConfig> {
        // The name is written into a structured-field string, so it stays plain.
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            v.problem(format!("{key}.name"), "use 1 to 64 of A-Z a-z 0-9 - _ .");
        }
        let rate = match (self.rate, self.requests, self.period) {
            (Some(rate), None, None) => v.check(&format!("{key}.rate"), parse_rate(&rate)),
            (None, Some(n), Some(period)) => {
                let period = v.check(&format!("{key}.period"), parse_duration(&period));
                period.map(|p| (n, p))
            }
            _ => {
                v.problem(key, "set either rate = \"N/unit\" or both requests and period");
                None
            }
        };
        let policy_key = match self.key.as_str() {
            "user" => Some(PolicyKey::User),
            "ip" => Some(PolicyKey::Ip),
            other => match other.strip_prefix("claim:") {
                Some(claim) if !claim.is_empty() => Some(PolicyKey::Claim(claim.to_owned())),
                _ => {
                    v.problem(format!("{key}.key"), "must be \"user\", \"ip\" or \"claim:<name>\"");
                    None
                }
            },
        };
        let routes = self
            .routes
            .iter()
            .enumerate()
            .filter_map(|(i, route)| v.prefix(&format!("{key}.routes[{i}]"), route))
            .collect();
        let (requests, period) = rate?;
        if requests == 0 || period.is_zero() {
            v.problem(key, "the rate must allow at least one request per non-zero period");
            return None;
        }
        if period / requests < Duration::from_micros(1) {
            v.problem(key, "the rate is finer than one request per microsecond");
            return None;
        }
        let burst = self.burst.unwrap_or(requests);
        if burst == 0 {
            v.problem(format!("{key}.burst"), "must be at least 1");
        }
        if (period / requests).saturating_mul(burst) > MAX_REFILL {
            v.problem(key, "a full burst would take more than 100 years to earn back");
            return None;
        }
        Some(PolicyConfig {
            name: self.name,
            requests,
            period,
            burst: burst.max(1),
            key: policy_key?,
            routes,
            headers: self.headers,
        })
    }
}

/// The longest a policy's full burst may take to earn back (`burst` intervals). The in-process
/// limiter (governor) counts that span in nanoseconds in a u64 (584 years) and adds it to the
/// clock; past it, building the limiter panicked and deciding overflowed (found by the property
/// tests below). No real policy comes near a century.
pub(crate) const MAX_REFILL: Duration = Duration::from_secs(100 * 365 * 86_400);

/// `"5/m"`, `"10/s"`, `"100/h"`, `"1000/d"` or `"3/10s"` (any duration after the slash).
fn parse_rate(text: &str) -> Result<(u32, Duration), String> {
    let (n, per) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?} is not a rate like \"5/m\""))?;
    let n: u32 = n
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: the count must be a whole number"))?;
    let per = per.trim();
    let period = match per {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        "h" => Duration::from_secs(3600),
        "d" => Duration::from_secs(86_400),
        other => parse_duration(other)?,
    };
    Ok((n, period))
}

/// A CIDR block, or a single address meaning a block of one.
fn parse_net(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{text:?} is not an address or CIDR block"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!(parse_rate("5/m"), Ok((5, Duration::from_secs(60))));
        assert_eq!(parse_rate("10/s"), Ok((10, Duration::from_secs(1))));
        assert_eq!(parse_rate("3/10s"), Ok((3, Duration::from_secs(10))));
        assert!(parse_rate("5").is_err());
        assert!(parse_rate("x/m").is_err());
        assert!(parse_rate("5/fortnight").is_err());
    }

    #[test]
    fn bad_policies_are_named_by_key() {
        let raw: RawRateLimit = toml::from_str(
            r#"
trusted_proxies = ["10.0.0.0/8", "nonsense"]
[[policies]]
name = "a"
rate = "5/m"
requests = 5
key = "user"
[[policies]]
name = "a"
rate = "0/m"
key = "claim:"
routes = ["api"]
"#,
        )
        .expect("toml");
        let mut v = Validator::new(std::path::Path::new("."));
        let config = raw.validate(&mut v);
        let keys: Vec<&str> = v.problems.iter().map(|p| p.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "rate_limit.policies[0]",
                "rate_limit.policies[1].name",
                "rate_limit.policies[1].key",
                "rate_limit.policies[1].routes[0]",
                "rate_limit.policies[1]",
                "rate_limit.trusted_proxies[1]",
            ]
        );
        assert!(config.policies.is_empty());
    }

    /// Regression: one request per 10^8 days with a burst of 5,000 passed validation, and the
    /// in-process limiter then overflowed on the 1,001st request (or panicked when built, for an
    /// interval over 584 years).
    #[test]
    fn a_burst_that_takes_over_a_century_to_earn_back_is_refused() {
        for (rate, burst) in [("1/100000000d", 5000), ("1/100000d", 1), ("1/1s", u32::MAX)] {
            let text = format!("[[policies]]\nname = \"p\"\nrate = \"{rate}\"\nburst = {burst}\nkey = \"user\"");
            let raw: RawRateLimit = toml::from_str(&text).expect("toml");
            let mut v = Validator::new(std::path::Path::new("."));
            let config = raw.validate(&mut v);
            assert!(config.policies.is_empty(), "{rate} burst {burst}");
            assert_eq!(v.problems[0].key, "rate_limit.policies[0]");
        }
        let raw: RawRateLimit =
            toml::from_str("[[policies]]\nname = \"p\"\nrate = \"1/d\"\nburst = 36000\nkey = \"user\"").expect("toml");
        let mut v = Validator::new(std::path::Path::new("."));
        assert_eq!(
            raw.validate(&mut v).policies.len(),
            1,
            "a burst of 98 years' worth is fine"
        );
    }

    #[test]
    fn burst_defaults_to_the_request_count() {
        let raw: RawRateLimit =
            toml::from_str("[[policies]]\nname = \"p\"\nrequests = 10\nperiod = \"1s\"\nkey = \"ip\"").expect("toml");
        let mut v = Validator::new(std::path::Path::new("."));
        let config = raw.validate(&mut v);
        assert!(v.problems.is_empty());
        assert_eq!(config.policies[0].burst, 10);
        assert_eq!(config.policies[0].interval(), Duration::from_millis(100));
        let routes: Vec<&str> = config.policies[0].routes.iter().map(|r| r.as_str()).collect();
        assert_eq!(routes, ["/"]);
    }

    #[test]
    fn nets_parse() {
        assert_eq!(parse_net("10.0.0.0/8").map(|n| n.prefix_len()), Ok(8));
        assert_eq!(parse_net("10.1.2.3").map(|n| n.prefix_len()), Ok(32));
        assert_eq!(parse_net("::1").map(|n| n.prefix_len()), Ok(128));
        assert!(parse_net("10.0.0.0/33").is_err());
    }
}

/// Property tests of rates and of the policies built from them.
#[cfg(test)]
mod properties {
    use proptest::prelude::*;

    use super::*;

    const UNITS: [(&str, u64); 4] = [("s", 1), ("m", 60), ("h", 3_600), ("d", 86_400)];

    /// A policy section as a user would write it; `None` leaves the key out.
    fn policy(requests: u32, period: &str, burst: Option<u32>) -> String {
        let burst = burst.map_or(String::new(), |b| format!("burst = {b}\n"));
        format!("[[policies]]\nname = \"p\"\nrequests = {requests}\nperiod = \"{period}\"\n{burst}key = \"user\"\n")
    }

    proptest! {
        #[test]
        fn a_count_per_unit_is_read(n in any::<u32>(), unit in prop::sample::select(UNITS.to_vec()), pad in " {0,2}") {
            let text = format!("{pad}{n}{pad}/{pad}{}{pad}", unit.0);
            prop_assert_eq!(parse_rate(&text), Ok((n, Duration::from_secs(unit.1))));
        }

        #[test]
        fn a_count_per_duration_is_read(n in any::<u32>(), millis in any::<u64>()) {
            let text = format!("{n}/{millis}ms");
            prop_assert_eq!(parse_rate(&text), Ok((n, Duration::from_millis(millis))));
        }

        #[test]
        fn any_text_is_refused_or_read_never_a_panic(text in "\\PC{0,24}") {
            if let Ok((n, _)) = parse_rate(&text) {
                let count = text.split_once('/').map(|(c, _)| c.trim().to_owned());
                prop_assert_eq!(count, Some(n.to_string()));
            }
        }

        /// Whatever rate and burst a file names, validation either refuses it with a reason or
        /// yields a policy whose interval is at least a microsecond and whose burst is at least one.
        #[test]
        fn every_policy_is_refused_or_usable(
            requests in any::<u32>(),
            period in prop_oneof![any::<u64>().prop_map(|ms| format!("{ms}ms")), any::<u32>().prop_map(|d| format!("{d}d"))],
            burst in prop::option::of(any::<u32>()),
        ) {
            let raw: RawRateLimit = toml::from_str(&policy(requests, &period, burst)).expect("toml");
            let mut v = Validator::new(std::path::Path::new("."));
            let config = raw.validate(&mut v);
            // With a problem the whole file is refused, whatever was built.
            if v.problems.is_empty() {
                prop_assert_eq!(config.policies.len(), 1);
                let p = &config.policies[0];
                prop_assert!(p.interval() >= Duration::from_micros(1));
                prop_assert!(p.burst >= 1);
                prop_assert!(p.interval().saturating_mul(p.burst) <= MAX_REFILL);
            }
        }
    }
}
