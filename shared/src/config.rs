//! The one typed configuration, read once at start-up from environment variables. Only the
//! binaries' `main` (through [`crate::lambda`] or the dev server) calls [`Config::from_env`];
//! library code receives the struct.

use std::fmt;
use std::path::PathBuf;

/// A variable that is missing or unusable, by name.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

/// Where the access-token keys come from.
#[derive(Clone)]
pub enum KeySource {
    /// PEM text from the environment (on AWS, injected from Secrets Manager / SSM).
    Pem {
        private: Option<String>,
        public: String,
    },
    /// A key pair generated on first run into this folder (local only).
    DataDir(PathBuf),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pem { private, .. } => f
                .debug_struct("Pem")
                .field("private", &private.as_ref().map(|_| "***"))
                .finish_non_exhaustive(),
            Self::DataDir(dir) => f.debug_tuple("DataDir").field(dir).finish(),
        }
    }
}

/// At most `limit` requests per `window` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub limit: u32,
    pub window: u32,
}

impl Rule {
    /// Reads `<limit>/<window seconds>`, e.g. `10/60`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let (limit, window) = raw
            .trim()
            .split_once('/')
            .ok_or("must look like 10/60 (requests/seconds)")?;
        let limit: u32 = limit
            .trim()
            .parse()
            .map_err(|_| "the request count must be a whole number")?;
        let window: u32 = window
            .trim()
            .parse()
            .map_err(|_| "the window must be a whole number of seconds")?;
        if limit == 0 || window == 0 || window > 86_400 {
            return Err("both numbers must be positive, the window at most 86400 seconds".into());
        }
        Ok(Self { limit, window })
    }
}

/// How failed logins on one email from one client slow that client down: the first `free`
/// failures cost nothing, then each further attempt waits `base · 2^(failures − free)` seconds
/// after the last failure, at most `max`. A backoff, not a lock: the wait always ends, and a
/// correct password after it signs in (and forgets the failures).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub free: u32,
    pub base: u32,
    pub max: u32,
}

impl Backoff {
    /// Reads `<free failures>/<base seconds>/<max seconds>`, e.g. `5/1/900`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let parts: Vec<&str> = raw.trim().split('/').map(str::trim).collect();
        let [free, base, max] = parts[..] else {
            return Err(
                "must look like 5/1/900 (free failures/first wait/longest wait, in seconds)".into(),
            );
        };
        let number = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| format!("{s:?} is not a whole number"))
        };
        let (free, base, max) = (number(free)?, number(base)?, number(max)?);
        if base == 0 || max < base || max > 86_400 {
            return Err(
                "the first wait must be positive and the longest between it and 86400 seconds"
                    .into(),
            );
        }
        Ok(Self { free, base, max })
    }

    /// How long after the last of `failures` failures the next attempt must wait, in seconds.
    pub fn wait(&self, failures: u64) -> u64 {
        let Some(over) = failures.checked_sub(u64::from(self.free)) else {
            return 0;
        };
        // Past 2^20 the doubling is far beyond any cap; stopping there avoids overflow.
        let doubled = u64::from(self.base).saturating_mul(1 << over.min(20));
        doubled.min(u64::from(self.max))
    }
}

/// Every limit, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    pub enabled: bool,
    /// Registrations per client IP. A venue's guests share one address, so this is sized for
    /// hundreds of sign-ups an hour from one Wi-Fi.
    pub register_ip: Rule,
    /// Logins per client IP, whatever the email.
    pub login_ip: Rule,
    /// Refreshes and logouts per client IP.
    pub refresh_ip: Rule,
    /// Failed logins per email from one client (an IPv4 address or an IPv6 /64) back that
    /// client off: its guesses slow it only, never the owner signing in from elsewhere.
    pub login_backoff: Backoff,
    /// Poll and job writes, per user.
    pub writes: Rule,
    /// Ballots, per signed-in voter.
    pub votes: Rule,
    /// Guests' ballots (invite tokens), per client IP: a venue's guests share one address.
    pub guest_ip: Rule,
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            register_ip: Rule {
                limit: 100,
                window: 600,
            },
            login_ip: Rule {
                limit: 100,
                window: 600,
            },
            refresh_ip: Rule {
                limit: 600,
                window: 600,
            },
            // Five free tries, then 1 s, 2 s, 4 s … up to 15 minutes between guesses: a
            // person who mistypes is never slowed noticeably, and a guesser gets about a
            // hundred tries a day per client.
            login_backoff: Backoff {
                free: 5,
                base: 1,
                max: 900,
            },
            writes: Rule {
                limit: 120,
                window: 60,
            },
            votes: Rule {
                limit: 30,
                window: 60,
            },
            guest_ip: Rule {
                limit: 600,
                window: 60,
            },
        }
    }
}

/// The longest refresh-token lifetime `TALLY_REFRESH_TOKEN_TTL` may set: a year.
pub const REFRESH_TOKEN_TTL_MAX: i64 = 365 * 86_400;

#[derive(Debug, Clone)]
pub struct Config {
    /// `TALLY_TABLE` (default `tally`): the DynamoDB table.
    pub table: String,
    /// `TALLY_JWT_ISSUER` (default `tally`).
    pub issuer: String,
    /// `TALLY_JWT_AUDIENCE` (default `tally-api`).
    pub audience: String,
    /// `TALLY_ACCESS_TOKEN_TTL` seconds (default 900, 60..=86400).
    pub access_token_ttl: i64,
    /// `TALLY_REFRESH_TOKEN_TTL` seconds (default 30 days).
    pub refresh_token_ttl: i64,
    /// `TALLY_RATE_LIMITS` `on` (default) or `off`, and each limit as `<requests>/<seconds>`:
    /// `TALLY_RATE_LIMIT_REGISTER_IP` (100/600), `TALLY_RATE_LIMIT_LOGIN_IP` (100/600),
    /// `TALLY_RATE_LIMIT_REFRESH_IP` (600/600), `TALLY_LOGIN_BACKOFF` (5/1/900, see [`Backoff`]),
    /// `TALLY_RATE_LIMIT_WRITES` (120/60), `TALLY_RATE_LIMIT_VOTES` (30/60),
    /// `TALLY_RATE_LIMIT_GUEST_IP` (600/60).
    pub rate_limits: RateLimits,
    /// `TALLY_DATA_DIR` (default `./.tally`): local data (engine files, generated keys).
    pub data_dir: PathBuf,
    /// `TALLY_JWT_PUBLIC_KEY` / `TALLY_JWT_PRIVATE_KEY` (PEM), required on Lambda; locally a
    /// pair is generated into the data folder when they are unset.
    pub keys: KeySource,
    /// `TALLY_JWT_PRIVATE_KEY_SECRET`: the name or ARN of the Secrets Manager secret holding the
    /// private key's PEM, which the auth function reads at cold start (so the key is in no
    /// environment variable); when set, it replaces `TALLY_JWT_PRIVATE_KEY`.
    pub private_key_secret: Option<String>,
    /// `TALLY_INVITE_KEY_SECRET`: the name or ARN of the Secrets Manager secret holding the key
    /// guests' invite tokens are derived from (256 bits or more, base64url), which the jobs and
    /// render functions read at cold start; required on Lambda. Locally a key is generated
    /// into the data folder. The key is never stored in the table, so nothing there lets
    /// anyone recompute a token.
    pub invite_key_secret: Option<String>,
    /// `TALLY_INVITE_KEY`: the invite key itself (base64url), for emulators and tests that
    /// must not write to the data folder; on Lambda the secret is used instead.
    pub invite_key: Option<String>,
    /// `TALLY_LIVE_KEY_SECRET`: the name or ARN of the Secrets Manager secret holding the key
    /// live-results passes are signed with (256 bits or more, base64url), which the votes
    /// function (handing passes out) and the live authorizer (checking them) read at cold
    /// start; required on Lambda by both. Locally a key is generated into the data folder.
    pub live_key_secret: Option<String>,
    /// `TALLY_LIVE_KEY`: the live key itself (base64url), for emulators and tests.
    pub live_key: Option<String>,
    /// `TALLY_LIVE_REALTIME_URL` (default: the public base URL's origin, as `ws(s)://…`, with
    /// `/event/realtime`, which the dev server serves): where browsers open the WebSocket of
    /// live results; on AWS the Events API's real-time endpoint.
    pub live_realtime_url: String,
    /// `TALLY_LIVE_HOST` (default: the public base URL's host): the Events API's HTTP host,
    /// which a subscriber names in its authorization (the protocol's `host` field).
    pub live_host: String,
    /// `TALLY_LIVE_PUBLISH_URL`: the Events API's HTTP publish endpoint (`https://…/event`),
    /// which the count function posts new results to on AWS; unset, it publishes nothing.
    pub live_publish_url: Option<String>,
    /// `TALLY_BUCKET` (default `tally-files`): the S3 bucket for generated files.
    pub bucket: String,
    /// `TALLY_RENDER_QUEUE_URL`: the SQS render queue; required on Lambda by the functions
    /// that enqueue (locally the dev server's in-process queue stands in).
    pub render_queue_url: Option<String>,
    /// `TALLY_DEAD_LETTER_QUEUE_URL`: the render queue's dead-letter queue; required on Lambda
    /// by the render function, which moves unreadable messages there on their first delivery.
    pub dead_letter_queue_url: Option<String>,
    /// `TALLY_PUBLIC_BASE_URL` (default `http://127.0.0.1:3000`): the origin guests open;
    /// invite QR codes encode `<base>/i/<token>`.
    pub public_base_url: String,
    /// `TALLY_RENDER_MAX_RECEIVES` (default 5): deliveries of a render message before it
    /// goes to the dead-letter queue; must equal the queue's `maxReceiveCount`.
    pub render_max_receives: u32,
    /// `TALLY_RENDER_GUESTS_PER_DAY` (default 20,000, two full invite lists): what one user's
    /// jobs may render per UTC day, counting each guest of an invites job and one file for a
    /// QR code or a chart. Past it, a new job is 429 `render-quota` until midnight UTC.
    pub render_guests_per_day: u64,
    /// `TALLY_RENDER_JOBS_IN_FLIGHT` (default 3): jobs one user may have queued or running at
    /// once. Past it, a new job is 429 `jobs-in-flight` until one of them ends (done, failed,
    /// or past `domain::job::JOB_DEADLINE`).
    pub render_jobs_in_flight: u32,
    /// `TALLY_S3_PATH_STYLE` (`off` by default; `on` for local engines and emulators, which
    /// serve buckets as paths rather than host names).
    pub s3_path_style: bool,
    /// `TALLY_CORS_ORIGINS`: browser origins allowed to call the API, comma-separated (none by
    /// default: the pages are served from the API's own origin and need no CORS).
    pub cors_origins: Vec<String>,
    /// `TALLY_METRICS` (`on` by default on Lambda, `off` elsewhere): CloudWatch Embedded Metric
    /// Format lines on stdout, one per request and per render message.
    pub metrics: bool,
}

impl Config {
    /// Reads the process environment. Call once, at start-up.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup`, so that tests need not touch the environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let text = |var: &'static str, default: &str| -> Result<String, ConfigError> {
            match lookup(var) {
                None => Ok(default.to_owned()),
                Some(v) if v.trim().is_empty() => Err(ConfigError {
                    var,
                    reason: "is empty".into(),
                }),
                Some(v) => Ok(v.trim().to_owned()),
            }
        };
        let optional = |var: &str| {
            lookup(var)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let seconds =
            |var: &'static str, default: i64, min: i64, max: i64| -> Result<i64, ConfigError> {
                match lookup(var) {
                    None => Ok(default),
                    Some(v) => match v.trim().parse::<i64>() {
                        Ok(n) if (min..=max).contains(&n) => Ok(n),
                        _ => Err(ConfigError {
                            var,
                            reason: format!(
                                "must be a whole number of seconds from {min} to {max}, got {v:?}"
                            ),
                        }),
                    },
                }
            };
        let switch = |var: &'static str, default: bool| -> Result<bool, ConfigError> {
            match lookup(var).as_deref().map(str::trim) {
                None => Ok(default),
                Some("on") => Ok(true),
                Some("off") => Ok(false),
                Some(other) => Err(ConfigError {
                    var,
                    reason: format!("must be `on` or `off`, got {other:?}"),
                }),
            }
        };
        let rule = |var: &'static str, default: Rule| -> Result<Rule, ConfigError> {
            match lookup(var) {
                None => Ok(default),
                Some(raw) => Rule::parse(&raw).map_err(|reason| ConfigError { var, reason }),
            }
        };
        // The one shared auth budget was split in three; a deployment still setting it would
        // otherwise run on defaults it never chose.
        if lookup("TALLY_RATE_LIMIT_AUTH_IP").is_some() {
            return Err(ConfigError {
                var: "TALLY_RATE_LIMIT_AUTH_IP",
                reason: "replaced by TALLY_RATE_LIMIT_REGISTER_IP, TALLY_RATE_LIMIT_LOGIN_IP and TALLY_RATE_LIMIT_REFRESH_IP".into(),
            });
        }
        // The per-email window became a backoff; a deployment still setting the window
        // would otherwise believe it had a limit it no longer has.
        if lookup("TALLY_RATE_LIMIT_LOGIN_EMAIL").is_some() {
            return Err(ConfigError {
                var: "TALLY_RATE_LIMIT_LOGIN_EMAIL",
                reason: "replaced by TALLY_LOGIN_BACKOFF (free failures/first wait/longest wait)"
                    .into(),
            });
        }
        let defaults = RateLimits::default();
        let rate_limits = RateLimits {
            enabled: switch("TALLY_RATE_LIMITS", true)?,
            register_ip: rule("TALLY_RATE_LIMIT_REGISTER_IP", defaults.register_ip)?,
            login_ip: rule("TALLY_RATE_LIMIT_LOGIN_IP", defaults.login_ip)?,
            refresh_ip: rule("TALLY_RATE_LIMIT_REFRESH_IP", defaults.refresh_ip)?,
            login_backoff: match lookup("TALLY_LOGIN_BACKOFF") {
                None => defaults.login_backoff,
                Some(raw) => Backoff::parse(&raw).map_err(|reason| ConfigError {
                    var: "TALLY_LOGIN_BACKOFF",
                    reason,
                })?,
            },
            writes: rule("TALLY_RATE_LIMIT_WRITES", defaults.writes)?,
            votes: rule("TALLY_RATE_LIMIT_VOTES", defaults.votes)?,
            guest_ip: rule("TALLY_RATE_LIMIT_GUEST_IP", defaults.guest_ip)?,
        };
        let data_dir = PathBuf::from(text("TALLY_DATA_DIR", "./.tally")?);
        let on_lambda = lookup("AWS_LAMBDA_FUNCTION_NAME").is_some();
        let keys = match (
            lookup("TALLY_JWT_PUBLIC_KEY"),
            lookup("TALLY_JWT_PRIVATE_KEY"),
        ) {
            (Some(public), private) => KeySource::Pem { private, public },
            (None, _) if on_lambda => {
                return Err(ConfigError {
                    var: "TALLY_JWT_PUBLIC_KEY",
                    reason: "is required on Lambda (the PEM of the Ed25519 public key)".into(),
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError {
                    var: "TALLY_JWT_PUBLIC_KEY",
                    reason: "must be set when TALLY_JWT_PRIVATE_KEY is".into(),
                });
            }
            (None, None) => KeySource::DataDir(data_dir.clone()),
        };
        let public_base_url = text("TALLY_PUBLIC_BASE_URL", "http://127.0.0.1:3000")?
            .trim_end_matches('/')
            .to_owned();
        Ok(Self {
            private_key_secret: lookup("TALLY_JWT_PRIVATE_KEY_SECRET")
                .filter(|v| !v.trim().is_empty()),
            invite_key_secret: lookup("TALLY_INVITE_KEY_SECRET")
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()),
            invite_key: lookup("TALLY_INVITE_KEY")
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty()),
            live_key_secret: optional("TALLY_LIVE_KEY_SECRET"),
            live_key: optional("TALLY_LIVE_KEY"),
            live_realtime_url: match optional("TALLY_LIVE_REALTIME_URL") {
                Some(url) => url,
                None => default_realtime_url(&public_base_url),
            },
            live_host: match optional("TALLY_LIVE_HOST") {
                Some(host) => host,
                None => host_of(&public_base_url),
            },
            live_publish_url: optional("TALLY_LIVE_PUBLISH_URL"),
            table: text("TALLY_TABLE", "tally")?,
            issuer: text("TALLY_JWT_ISSUER", "tally")?,
            audience: text("TALLY_JWT_AUDIENCE", "tally-api")?,
            access_token_ttl: seconds("TALLY_ACCESS_TOKEN_TTL", 900, 60, 86_400)?,
            refresh_token_ttl: seconds(
                "TALLY_REFRESH_TOKEN_TTL",
                30 * 86_400,
                3_600,
                REFRESH_TOKEN_TTL_MAX,
            )?,
            rate_limits,
            data_dir,
            keys,
            bucket: text("TALLY_BUCKET", "tally-files")?,
            render_queue_url: lookup("TALLY_RENDER_QUEUE_URL").filter(|v| !v.trim().is_empty()),
            dead_letter_queue_url: lookup("TALLY_DEAD_LETTER_QUEUE_URL")
                .filter(|v| !v.trim().is_empty()),
            public_base_url: public_base_url.clone(),
            render_guests_per_day: u64::try_from(seconds(
                "TALLY_RENDER_GUESTS_PER_DAY",
                20_000,
                1,
                10_000_000,
            )?)
            .unwrap_or(20_000),
            render_jobs_in_flight: u32::try_from(seconds(
                "TALLY_RENDER_JOBS_IN_FLIGHT",
                3,
                1,
                1000,
            )?)
            .unwrap_or(3),
            render_max_receives: u32::try_from(seconds("TALLY_RENDER_MAX_RECEIVES", 5, 1, 1000)?)
                .unwrap_or(5),
            s3_path_style: switch("TALLY_S3_PATH_STYLE", false)?,
            cors_origins: lookup("TALLY_CORS_ORIGINS")
                .map(|v| {
                    v.split(',')
                        .map(|o| o.trim().trim_end_matches('/').to_owned())
                        .filter(|o| !o.is_empty())
                        .collect()
                })
                .unwrap_or_default(),
            metrics: switch("TALLY_METRICS", on_lambda)?,
        })
    }
}

/// The dev server's live-results WebSocket on the public origin: `http` becomes `ws` and
/// `https` becomes `wss`, so a page opens it on the origin it was served from.
fn default_realtime_url(public_base_url: &str) -> String {
    let origin = match public_base_url.strip_prefix("https://") {
        Some(rest) => format!("wss://{}", rest.split('/').next().unwrap_or(rest)),
        None => {
            let rest = public_base_url
                .strip_prefix("http://")
                .unwrap_or(public_base_url);
            format!("ws://{}", rest.split('/').next().unwrap_or(rest))
        }
    };
    format!("{origin}/event/realtime")
}

/// The host (and port) of a URL.
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_lookup(|name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        })
    }

    #[test]
    fn defaults_need_no_variables() {
        let c = config(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (c.table.as_str(), c.access_token_ttl, c.rate_limits),
            ("tally", 900, RateLimits::default())
        );
        assert!(matches!(c.keys, KeySource::DataDir(_)));
    }

    #[test]
    fn live_results_default_to_the_public_origin() {
        let c = config(&[("TALLY_PUBLIC_BASE_URL", "https://vote.example.com/")])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (c.live_realtime_url.as_str(), c.live_host.as_str()),
            ("wss://vote.example.com/event/realtime", "vote.example.com")
        );
        let c = config(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.live_realtime_url, "ws://127.0.0.1:3000/event/realtime");
        let c = config(&[
            (
                "TALLY_LIVE_REALTIME_URL",
                "wss://x.appsync-realtime-api.eu-west-1.amazonaws.com/event/realtime",
            ),
            ("TALLY_LIVE_HOST", "x.appsync-api.eu-west-1.amazonaws.com"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.live_host, "x.appsync-api.eu-west-1.amazonaws.com");
        assert!(
            c.live_realtime_url
                .starts_with("wss://x.appsync-realtime-api")
        );
    }

    #[test]
    fn bad_values_name_their_variable() {
        let err = config(&[("TALLY_ACCESS_TOKEN_TTL", "soon")]).err();
        assert_eq!(err.map(|e| e.var), Some("TALLY_ACCESS_TOKEN_TTL"));
        let err = config(&[("TALLY_RATE_LIMITS", "maybe")]).err();
        assert_eq!(err.map(|e| e.var), Some("TALLY_RATE_LIMITS"));
        let err = config(&[("AWS_LAMBDA_FUNCTION_NAME", "votes")]).err();
        assert_eq!(err.map(|e| e.var), Some("TALLY_JWT_PUBLIC_KEY"));
    }

    #[test]
    fn rules_read_requests_per_seconds() {
        assert_eq!(
            Rule::parse("10/60"),
            Ok(Rule {
                limit: 10,
                window: 60
            })
        );
        for bad in ["", "10", "0/60", "10/0", "x/60", "10/999999"] {
            assert!(Rule::parse(bad).is_err(), "{bad}");
        }
    }

    /// The login backoff grows from the first failure past the free ones, is capped, and
    /// replaces the old per-email window, which a deployment is told about.
    #[test]
    fn the_login_backoff_doubles_up_to_its_cap() {
        let b = Backoff::parse("2/3/20").unwrap_or_else(|e| panic!("{e}"));
        let waits: Vec<u64> = (0..7).map(|n| b.wait(n)).collect();
        assert_eq!(waits, [0, 0, 3, 6, 12, 20, 20]);
        assert_eq!(RateLimits::default().login_backoff.wait(u64::MAX), 900);
        for bad in ["", "5/1", "5/0/900", "5/10/5", "5/1/100000", "a/1/9"] {
            assert!(Backoff::parse(bad).is_err(), "{bad}");
        }
        let err = config(&[("TALLY_RATE_LIMIT_LOGIN_EMAIL", "10/300")]).err();
        assert_eq!(err.map(|e| e.var), Some("TALLY_RATE_LIMIT_LOGIN_EMAIL"));
        let c = config(&[("TALLY_LOGIN_BACKOFF", "3/2/60")]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.rate_limits.login_backoff.wait(4), 4);
    }

    /// One venue's Wi-Fi is one address: the defaults must let hundreds of guests sign up and
    /// sign in from it within an hour, each route on its own budget.
    #[test]
    fn the_default_auth_budgets_fit_a_venue() {
        let per_hour = |rule: Rule| u64::from(rule.limit) * 3_600 / u64::from(rule.window);
        let limits = RateLimits::default();
        assert!(per_hour(limits.register_ip) >= 500);
        assert!(per_hour(limits.login_ip) >= 500);
        assert!(per_hour(limits.refresh_ip) >= per_hour(limits.login_ip));
        assert!(per_hour(limits.guest_ip) >= 1_000);
    }

    /// The render quota and the signing key's secret: defaults, and a bad quota named.
    #[test]
    fn render_quota_and_key_secret_are_read() {
        let c = config(&[]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (c.render_guests_per_day, c.private_key_secret),
            (20_000, None)
        );
        let c = config(&[
            ("TALLY_RENDER_GUESTS_PER_DAY", "50"),
            ("TALLY_JWT_PRIVATE_KEY_SECRET", "tally/jwt-private-key"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.render_guests_per_day, 50);
        assert_eq!(
            c.private_key_secret.as_deref(),
            Some("tally/jwt-private-key")
        );
        let err = config(&[("TALLY_RENDER_GUESTS_PER_DAY", "0")]).err();
        assert_eq!(err.map(|e| e.var), Some("TALLY_RENDER_GUESTS_PER_DAY"));
        assert_eq!(c.render_jobs_in_flight, 3);
        let c = config(&[("TALLY_RENDER_JOBS_IN_FLIGHT", "7")]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.render_jobs_in_flight, 7);
        let err = config(&[("TALLY_RENDER_JOBS_IN_FLIGHT", "0")]).err();
        assert_eq!(err.map(|e| e.var), Some("TALLY_RENDER_JOBS_IN_FLIGHT"));
    }

    #[test]
    fn rate_limits_can_be_turned_off() {
        let c = config(&[("TALLY_RATE_LIMITS", "off")]).unwrap_or_else(|e| panic!("{e}"));
        assert!(!c.rate_limits.enabled);
        let c = config(&[("TALLY_RATE_LIMIT_VOTES", "3/10")]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            c.rate_limits.votes,
            Rule {
                limit: 3,
                window: 10
            }
        );
        let err = config(&[("TALLY_RATE_LIMIT_WRITES", "lots")]).err();
        assert_eq!(err.map(|e| e.var), Some("TALLY_RATE_LIMIT_WRITES"));
        let err = config(&[("TALLY_RATE_LIMIT_AUTH_IP", "30/60")]).err();
        assert_eq!(err.map(|e| e.var), Some("TALLY_RATE_LIMIT_AUTH_IP"));
    }
}
