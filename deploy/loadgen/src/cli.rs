//! Command-line arguments, parsed by hand: a dozen `--key value` pairs do not justify a parser
//! crate and its build time in a workspace whose target directory is shared.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use crate::auth::{JWT_SECRET_ENV, OLD_OPERATOR_TOKEN_ENV, OPERATOR_TOKEN_ENV};

pub const USAGE: &str = "\
usage: loadgen [--closed N | --rate R] [options]
       loadgen token CUSTOMER_ID [--ttl 1h] [--jwt-secret S]   print a customer JWT
       loadgen bench --help                                    the standard benchmark

Load:
  --closed N             closed loop: N clients, each places an order and waits for its
                         terminal status before the next (default: --closed 64)
  --rate R               open loop: R orders/s on a fixed schedule, whatever the fleet does
  --duration S           seconds of load (default 30)
  --max-in-flight N      open loop: orders not yet terminal beyond which a tick is skipped
                         and counted as dropped (default 20000)
Mix (fractions of orders; the rest are meant to complete):
  --declined F           placed by customers with a zero balance (default 0.10)
  --out-of-stock F       for a scarce product (default 0.10)
Population:
  --customers N          customers with a large balance (default 500)
  --broke-customers N    customers with a zero balance (default 20)
  --products N           products with a large stock (default 500)
  --scarce-products N    products with --scarce-stock units (default 10)
  --scarce-stock N       units of each scarce product (default 2)
  --run-id ID            prefix of every seeded id (default: r<unix seconds>)
Endpoints:
  --orchestrator URL     default http://127.0.0.1:3000
  --payment URL          default http://127.0.0.1:3001
  --inventory URL        default http://127.0.0.1:3002
Credentials (better from the environment: a flag's value shows in the process list):
  --operator-token T     sent as `Authorization: Bearer T` when seeding and checking
                         (default: $APP__AUTH__OPERATOR_TOKEN, else $APP__ADMIN__TOKEN)
  --jwt-secret S         the fleet's HS256 secret: each customer's orders and order reads
                         carry a JWT minted with it (sub = customer id, valid 24 h)
                         (default: $APP__AUTH__JWT_SECRET; without one, customers send the
                         operator token)
Tracking and checks:
  --amqp URL             learn each order's end from the orchestrator's order.completed /
                         order.failed events on the saga.events exchange of this broker and
                         vhost (url-encoded), e.g.
                         amqp://guest:guest@127.0.0.1:5672/saga-bench; the fleet serves no
                         status reads then. Without it, each order is polled with
                         GET /api/orders/{id}
  --track-timeout S      longest wait for one order's terminal status (default 60); with
                         --amqp, an order whose event has not come by then is read once with
                         GET /api/orders/{id}
  --poll-budget N        without --amqp: most status polls per second over all orders in
                         flight; the per-order backoff stretches to respect it (default 400)
  --payment-checks N     orders whose payments are checked, 0 = all (default 2000)
  --payment-checks-within S  check only the payments of orders sent in the last S seconds of
                         the load (default: all): a fleet prunes finished payments after its
                         retention.history, so older ones are gone by design
  --skip-checks          do not check the invariants
  --marks FILE           moments that may hold the fleet up, one per line in Unix epoch
                         seconds (e.g. the broker's write-ahead-log rollovers, appended while
                         the load runs; read when it ends): the report profiles the end-to-end
                         latency of the orders by when they were sent against the nearest one,
                         from 1 s before to 2 s after, in quarter seconds
  Refusals (503 shed by admission control, 429 rate-limited) are counted apart from
  errors; in the closed loop the client waits the answer's Retry-After (1 s if none, at
  most 10 s) before its next order; the open loop does not retry.
  --window S             keep no orders, only aggregates: per second, per window of S seconds
                         (the report's windows instead of minutes) and the invariants'
                         expected values, so memory stays flat in a long run; percentiles are
                         then within 1 % (log buckets), the raw JSON lists no orders, and
                         --marks and --payment-checks 0 are refused
Output:
  --out DIR              raw JSON and SVG chart go here (default target/bench)
  --label NAME           file name stem (default: the run id)
  --quiet                no live progress line
";

/// How orders are offered to the fleet.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Load {
    /// N clients; each waits for its order's terminal status before placing the next, so at
    /// most N sagas are in flight and the completed rate is what the fleet sustains.
    Closed { clients: usize },
    /// A fixed arrival rate; latencies are measured from the scheduled send time, so a fleet
    /// (or a load generator) that falls behind shows up in them (no coordinated omission).
    Open { rate: f64 },
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Settings {
    pub load: Load,
    #[serde(with = "secs")]
    pub duration: Duration,
    pub max_in_flight: usize,
    pub declined: f64,
    pub out_of_stock: f64,
    pub customers: usize,
    pub broke_customers: usize,
    pub products: usize,
    pub scarce_products: usize,
    pub scarce_stock: i64,
    pub run_id: String,
    pub orchestrator: String,
    pub payment: String,
    pub inventory: String,
    /// Broker URL of the event tap; `None`: track by polling. Reported without its password.
    #[serde(serialize_with = "redacted")]
    pub amqp: Option<String>,
    #[serde(with = "secs")]
    pub track_timeout: Duration,
    pub poll_budget: f64,
    pub payment_checks: usize,
    /// `--payment-checks-within`: sample only orders sent this many seconds before the end.
    pub payment_checks_within_s: Option<f64>,
    pub skip_checks: bool,
    /// `--marks`: a file of epoch seconds, read when the load ends.
    pub marks: Option<PathBuf>,
    /// `--window`: keep aggregates per window of this many seconds instead of every order.
    pub window_s: Option<usize>,
    pub out: PathBuf,
    pub label: String,
    pub quiet: bool,
    /// `--operator-token`: never serialised into the report, redacted in `Debug`.
    #[serde(skip)]
    pub operator_token: Option<SecretString>,
    /// `--jwt-secret`: likewise.
    #[serde(skip)]
    pub jwt_secret: Option<SecretString>,
}

mod secs {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// The report names the broker and vhost, never the password.
fn redacted<S: serde::Serializer>(url: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => s.serialize_some(&redact(url)),
        None => s.serialize_none(),
    }
}

/// `amqp://user:secret@host:port/vhost` without the secret.
pub fn redact(url: &str) -> String {
    match url.parse::<lapin::uri::AMQPUri>() {
        Ok(uri) => format!(
            "amqp://{}@{}:{}/{}",
            uri.authority.userinfo.username, uri.authority.host, uri.authority.port, uri.vhost
        ),
        Err(_) => "(unreadable URL)".to_string(),
    }
}

pub enum Command {
    Run(Box<Settings>),
    Help,
}

/// Reads the environment for the credentials' defaults.
pub fn parse(args: &[String]) -> Result<Command, String> {
    parse_with(args, &|name| std::env::var(name).ok())
}

/// The credentials' defaults from `env` (the process environment, or a test's map); an empty
/// value counts as unset.
fn credentials_from(env: &dyn Fn(&str) -> Option<String>) -> [Option<SecretString>; 2] {
    let get = |name: &str| env(name).filter(|v| !v.is_empty());
    [
        get(OPERATOR_TOKEN_ENV)
            .or_else(|| get(OLD_OPERATOR_TOKEN_ENV))
            .map(SecretString::from),
        get(JWT_SECRET_ENV).map(SecretString::from),
    ]
}

pub fn parse_with(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Command, String> {
    let [operator_token, jwt_secret] = credentials_from(env);
    let run_id = format!("r{}", chrono::Utc::now().timestamp());
    let mut s = Settings {
        load: Load::Closed { clients: 64 },
        duration: Duration::from_secs(30),
        max_in_flight: 20_000,
        declined: 0.10,
        out_of_stock: 0.10,
        customers: 500,
        broke_customers: 20,
        products: 500,
        scarce_products: 10,
        scarce_stock: 2,
        run_id,
        orchestrator: "http://127.0.0.1:3000".into(),
        payment: "http://127.0.0.1:3001".into(),
        inventory: "http://127.0.0.1:3002".into(),
        amqp: None,
        track_timeout: Duration::from_secs(60),
        poll_budget: 400.0,
        payment_checks: 2000,
        payment_checks_within_s: None,
        skip_checks: false,
        marks: None,
        window_s: None,
        out: PathBuf::from("target/bench"),
        label: String::new(),
        quiet: false,
        operator_token,
        jwt_secret,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .map(String::as_str)
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--closed" => {
                let clients: usize = number(flag, value()?)?;
                if clients == 0 {
                    return Err("--closed must be at least 1".into());
                }
                s.load = Load::Closed { clients };
            }
            "--rate" => {
                let rate: f64 = number(flag, value()?)?;
                if !(rate > 0.0 && rate.is_finite()) {
                    return Err("--rate must be a positive number".into());
                }
                s.load = Load::Open { rate };
            }
            "--duration" => s.duration = seconds(flag, value()?)?,
            "--max-in-flight" => s.max_in_flight = number(flag, value()?)?,
            "--declined" => s.declined = fraction(flag, value()?)?,
            "--out-of-stock" => s.out_of_stock = fraction(flag, value()?)?,
            "--customers" => s.customers = number(flag, value()?)?,
            "--broke-customers" => s.broke_customers = number(flag, value()?)?,
            "--products" => s.products = number(flag, value()?)?,
            "--scarce-products" => s.scarce_products = number(flag, value()?)?,
            "--scarce-stock" => s.scarce_stock = number(flag, value()?)?,
            "--run-id" => s.run_id = value()?.to_string(),
            "--orchestrator" => s.orchestrator = url(value()?),
            "--payment" => s.payment = url(value()?),
            "--inventory" => s.inventory = url(value()?),
            "--amqp" => s.amqp = Some(amqp_url(value()?)?),
            "--track-timeout" => s.track_timeout = seconds(flag, value()?)?,
            "--poll-budget" => {
                s.poll_budget = number(flag, value()?)?;
                if !(s.poll_budget > 0.0 && s.poll_budget.is_finite()) {
                    return Err("--poll-budget must be a positive number".into());
                }
            }
            "--payment-checks" => s.payment_checks = number(flag, value()?)?,
            "--payment-checks-within" => {
                s.payment_checks_within_s = Some(seconds(flag, value()?)?.as_secs_f64());
            }
            "--skip-checks" => s.skip_checks = true,
            "--marks" => s.marks = Some(PathBuf::from(value()?)),
            "--window" => {
                let window: usize = number(flag, value()?)?;
                if window == 0 {
                    return Err("--window must be at least 1".into());
                }
                s.window_s = Some(window);
            }
            "--out" => s.out = PathBuf::from(value()?),
            "--label" => s.label = value()?.to_string(),
            "--quiet" => s.quiet = true,
            "--operator-token" => s.operator_token = Some(secret(flag, value()?)?),
            "--jwt-secret" => s.jwt_secret = Some(secret(flag, value()?)?),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if s.declined + s.out_of_stock > 1.0 {
        return Err("--declined plus --out-of-stock must not exceed 1".into());
    }
    // Every kind of order needs someone to place it and something to buy.
    if s.customers == 0 || s.products == 0 {
        return Err("--customers and --products must be at least 1".into());
    }
    if s.declined > 0.0 && s.broke_customers == 0 {
        return Err("--declined needs --broke-customers of at least 1".into());
    }
    if s.out_of_stock > 0.0 && s.scarce_products == 0 {
        return Err("--out-of-stock needs --scarce-products of at least 1".into());
    }
    // Ids are at most 64 characters; the longest seeded suffix is "-b-<n>" / "-s-<n>".
    if s.run_id.is_empty() || s.run_id.chars().count() > 40 {
        return Err("--run-id must be 1 to 40 characters".into());
    }
    if s.window_s.is_some() && (s.marks.is_some() || s.payment_checks == 0) {
        return Err(
            "--window keeps no orders: --marks and --payment-checks 0 need every order".into(),
        );
    }
    if s.scarce_stock < 0 {
        return Err("--scarce-stock must be 0 or more".into());
    }
    if s.label.is_empty() {
        s.label = s.run_id.clone();
    }
    Ok(Command::Run(Box::new(s)))
}

fn secret(flag: &str, value: &str) -> Result<SecretString, String> {
    if value.is_empty() {
        return Err(format!("{flag} must not be empty"));
    }
    Ok(SecretString::from(value))
}

/// `loadgen token CUSTOMER_ID [--ttl D] [--jwt-secret S]`.
#[derive(Debug)]
pub struct TokenRequest {
    pub customer_id: String,
    pub ttl: Duration,
    pub jwt_secret: SecretString,
}

pub const TOKEN_USAGE: &str = "\
usage: loadgen token CUSTOMER_ID [--ttl D] [--jwt-secret S]

Prints a customer JWT for the fleet: HS256, sub = CUSTOMER_ID, exp = now + D, iat = now.
  --ttl D          how long it is valid, humantime (default 1h; e.g. 15m, 24h)
  --jwt-secret S   the fleet's secret (default: $APP__AUTH__JWT_SECRET)
";

pub fn parse_token(
    args: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<TokenRequest, String> {
    let [_, mut jwt_secret] = credentials_from(env);
    let mut customer_id = None;
    let mut ttl = Duration::from_secs(3600);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .map(String::as_str)
                .ok_or_else(|| format!("{arg} needs a value"))
        };
        match arg.as_str() {
            "--ttl" => {
                let v = value()?;
                ttl = humantime::parse_duration(v)
                    .map_err(|e| format!("--ttl: {v:?} is not a duration such as 1h: {e}"))?;
                if ttl.is_zero() {
                    return Err("--ttl must be positive".into());
                }
            }
            "--jwt-secret" => jwt_secret = Some(secret(arg, value()?)?),
            flag if flag.starts_with("--") => return Err(format!("unknown argument {flag}")),
            id if customer_id.is_none() => customer_id = Some(id.to_string()),
            extra => return Err(format!("unexpected argument {extra:?}")),
        }
    }
    let customer_id = customer_id
        .filter(|id| !id.is_empty())
        .ok_or("the customer id is missing")?;
    let jwt_secret =
        jwt_secret.ok_or("no JWT secret: set APP__AUTH__JWT_SECRET or pass --jwt-secret")?;
    Ok(TokenRequest {
        customer_id,
        ttl,
        jwt_secret,
    })
}

pub(crate) fn number<T: std::str::FromStr>(flag: &str, value: &str) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("{flag}: {value:?} is not a valid number"))
}

pub(crate) fn fraction(flag: &str, value: &str) -> Result<f64, String> {
    let f: f64 = number(flag, value)?;
    if (0.0..=1.0).contains(&f) {
        Ok(f)
    } else {
        Err(format!("{flag} must be between 0 and 1"))
    }
}

fn seconds(flag: &str, value: &str) -> Result<Duration, String> {
    let s: f64 = number(flag, value)?;
    if s > 0.0 && s.is_finite() {
        Ok(Duration::from_secs_f64(s))
    } else {
        Err(format!("{flag} must be a positive number of seconds"))
    }
}

/// Checked now so that a typo fails before seeding; lapin parses it again to connect.
pub(crate) fn amqp_url(value: &str) -> Result<String, String> {
    let uri: lapin::uri::AMQPUri = value
        .parse()
        .map_err(|e| format!("--amqp: {value:?} is not an AMQP URL: {e}"))?;
    // The workspace builds lapin without TLS.
    if uri.scheme != lapin::uri::AMQPScheme::AMQP {
        return Err("--amqp: only amqp:// URLs are supported (no TLS in this build)".into());
    }
    Ok(value.to_string())
}

pub(crate) fn url(value: &str) -> String {
    value.trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn open_loop_rate_and_mix_are_parsed() {
        let Ok(Command::Run(s)) = parse(&args(&["--rate", "250", "--declined", "0.2"])) else {
            panic!("should parse");
        };
        assert_eq!(s.load, Load::Open { rate: 250.0 });
        assert_eq!(s.declined, 0.2);
        assert_eq!(s.label, s.run_id);
    }

    #[test]
    fn without_amqp_orders_are_polled() {
        let Ok(Command::Run(s)) = parse(&args(&[])) else {
            panic!("should parse");
        };
        assert_eq!(s.amqp, None);
    }

    #[test]
    fn a_marks_file_is_taken_and_none_by_default() {
        let Ok(Command::Run(s)) = parse(&args(&["--marks", "target/bench/r/rollovers.txt"])) else {
            panic!("parse failed");
        };
        assert_eq!(s.marks, Some(PathBuf::from("target/bench/r/rollovers.txt")));
        let Ok(Command::Run(s)) = parse(&args(&[])) else {
            panic!("parse failed");
        };
        assert_eq!(s.marks, None);
        assert!(parse(&args(&["--marks"])).is_err());
    }

    #[test]
    fn an_amqp_url_is_taken_and_reported_without_its_password() {
        let url = "amqp://guest:s3cret@127.0.0.1:5672/saga-bench";
        let Ok(Command::Run(s)) = parse(&args(&["--amqp", url])) else {
            panic!("should parse");
        };
        assert_eq!(s.amqp.as_deref(), Some(url));
        let json = serde_json::to_string(&*s).unwrap();
        assert!(!json.contains("s3cret"), "{json}");
        assert!(
            json.contains("\"amqp://guest@127.0.0.1:5672/saga-bench\""),
            "{json}"
        );
    }

    #[test]
    fn an_encoded_vhost_is_decoded_for_the_report() {
        assert_eq!(
            redact("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest@127.0.0.1:5672//"
        );
    }

    #[test]
    fn amqps_and_garbage_are_refused() {
        assert!(parse(&args(&["--amqp", "amqps://guest:guest@127.0.0.1/x"])).is_err());
        assert!(parse(&args(&["--amqp", "http://127.0.0.1:5672"])).is_err());
    }

    #[test]
    fn a_window_is_taken_but_not_with_what_needs_every_order() {
        let Ok(Command::Run(s)) = parse(&args(&["--window", "300"])) else {
            panic!("should parse");
        };
        assert_eq!(s.window_s, Some(300));
        assert!(parse(&args(&["--window", "0"])).is_err());
        assert!(parse(&args(&["--window", "60", "--payment-checks", "0"])).is_err());
        assert!(parse(&args(&["--window", "60", "--marks", "m.txt"])).is_err());
    }

    #[test]
    fn credentials_come_from_the_environment_the_old_name_and_the_flags() {
        use secrecy::ExposeSecret;
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let run = |a: &[&str], e: &dyn Fn(&str) -> Option<String>| match parse_with(&args(a), e) {
            Ok(Command::Run(s)) => s,
            _ => panic!("should parse"),
        };
        let s = run(
            &[],
            &env(&[("APP__ADMIN__TOKEN", "old"), ("APP__AUTH__JWT_SECRET", "j")]),
        );
        assert_eq!(s.operator_token.as_ref().unwrap().expose_secret(), "old");
        assert_eq!(s.jwt_secret.as_ref().unwrap().expose_secret(), "j");
        let both = env(&[
            ("APP__ADMIN__TOKEN", "old"),
            ("APP__AUTH__OPERATOR_TOKEN", "new"),
        ]);
        let s = run(&[], &both);
        assert_eq!(s.operator_token.as_ref().unwrap().expose_secret(), "new");
        let s = run(&["--operator-token", "flag"], &both);
        assert_eq!(s.operator_token.as_ref().unwrap().expose_secret(), "flag");
        assert!(run(&[], &env(&[])).operator_token.is_none());
    }

    #[test]
    fn secrets_are_neither_serialised_nor_debug_printed() {
        let Ok(Command::Run(s)) = parse_with(
            &args(&[
                "--operator-token",
                "op-s3cret",
                "--jwt-secret",
                "jwt-s3cret",
            ]),
            &|_| None,
        ) else {
            panic!("should parse");
        };
        let printed = format!("{s:?} {}", serde_json::to_string(&*s).unwrap());
        assert!(!printed.contains("s3cret"), "{printed}");
    }

    #[test]
    fn a_token_request_needs_an_id_and_a_secret() {
        let secret = |name: &str| (name == "APP__AUTH__JWT_SECRET").then(|| "k".to_string());
        let t = parse_token(&args(&["c-7", "--ttl", "15m"]), &secret).unwrap();
        assert_eq!(
            (t.customer_id.as_str(), t.ttl),
            ("c-7", Duration::from_secs(900))
        );
        assert_eq!(
            parse_token(&args(&["c-7"]), &secret).unwrap().ttl.as_secs(),
            3600
        );
        assert!(parse_token(&args(&[]), &secret).is_err());
        assert!(parse_token(&args(&["c-7"]), &|_| None).is_err());
        assert!(parse_token(&args(&["c-7", "--ttl", "soon"]), &secret).is_err());
    }

    #[test]
    fn a_mix_over_one_is_refused() {
        assert!(parse(&args(&["--declined", "0.6", "--out-of-stock", "0.5"])).is_err());
    }
}
