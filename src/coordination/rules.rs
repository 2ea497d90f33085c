//! Feature-flag semantics as plain Rust: bucketing, strategies, condition rules, variants.
//! Nothing here touches Postgres, so every rule is unit-tested directly.

#![forbid(unsafe_code)]

use crate::error::ContractError;
use serde_json::Value;
use std::cell::RefCell;
use std::cmp::Ordering;
use xxhash_rust::xxh3::xxh3_64;

/// Buckets are 0.01 % wide: a user is in a rollout of p % when bucket < p * 100.
pub const BUCKETS: u64 = 10_000;

thread_local! {
    // Reused for every hash input, so an evaluation allocates nothing.
    static HASH_INPUT: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(512));
}

/// xxh3_64(flag_key || separator || user_id as canonical lower-case text) mod 10000.
fn bucket_with(flag_key: &str, separator: &[u8], user: &[u8; 16]) -> u32 {
    HASH_INPUT.with(|buf| {
        let mut buf = buf.borrow_mut();
        buf.clear();
        buf.extend_from_slice(flag_key.as_bytes());
        buf.extend_from_slice(separator);
        let mut text = [0u8; 36];
        uuid::Uuid::from_bytes(*user).hyphenated().encode_lower(&mut text);
        buf.extend_from_slice(&text);
        (xxh3_64(&buf) % BUCKETS) as u32
    })
}

/// The rollout bucket of (flag, user): `xxh3_64(flag_key || ':' || user_id) mod 10000`. Part of
/// the contract: it must never change, or users would be reshuffled.
pub fn rollout_bucket(flag_key: &str, user: &[u8; 16]) -> u32 {
    bucket_with(flag_key, b":", user)
}

/// The variant bucket, from a different hash input so that which variant a user gets is
/// independent of whether the user is in the rollout.
pub fn variant_bucket(flag_key: &str, user: &[u8; 16]) -> u32 {
    bucket_with(flag_key, b":variant:", user)
}

/// The environments an evaluation is asked for (a flag row may also be for `all` of them).
pub const ENVIRONMENTS: [&str; 3] = ["development", "staging", "production"];
/// The rollout strategies, as feature_flags.rollout_strategy spells them.
pub const STRATEGIES: [&str; 5] = ["all", "none", "percentage", "user_list", "condition"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Environment {
    Development,
    Staging,
    Production,
}

impl Environment {
    pub fn parse(s: &str) -> Result<Self, ContractError> {
        match s {
            "development" => Ok(Environment::Development),
            "staging" => Ok(Environment::Staging),
            "production" => Ok(Environment::Production),
            other => Err(ContractError::invalid(
                "p_environment",
                format!("must be development, staging or production, got {other:?}"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Development => "development",
            Environment::Staging => "staging",
            Environment::Production => "production",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    All,
    None,
    Percentage,
    UserList,
    Condition,
}

impl Strategy {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "all" => Strategy::All,
            "none" => Strategy::None,
            "percentage" => Strategy::Percentage,
            "user_list" => Strategy::UserList,
            "condition" => Strategy::Condition,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Operator {
    Eq,
    Neq,
    In,
    NotIn,
    Contains,
    StartsWith,
    Gt,
    Gte,
    Lt,
    Lte,
    SemverGte,
    SemverLt,
}

const OPERATORS: &str = "eq, neq, in, not_in, contains, starts_with, gt, gte, lt, lte, semver_gte, semver_lt";

impl Operator {
    fn parse(s: &str) -> Option<Self> {
        use Operator::*;
        Some(match s {
            "eq" => Eq,
            "neq" => Neq,
            "in" => In,
            "not_in" => NotIn,
            "contains" => Contains,
            "starts_with" => StartsWith,
            "gt" => Gt,
            "gte" => Gte,
            "lt" => Lt,
            "lte" => Lte,
            "semver_gte" => SemverGte,
            "semver_lt" => SemverLt,
            _ => return None,
        })
    }
}

/// One rule of a `condition` flag: `{"attribute": "app.version", "operator": "semver_gte",
/// "value": "2.3"}`. The attribute is a dot-separated path into the caller's `p_context`.
#[derive(Clone, Debug)]
pub struct Condition {
    path: Vec<String>,
    op: Operator,
    value: Value,
    version: Option<semver::Version>,
}

/// Parses a version leniently the way app versions are written ("v2.3", "2", "2.3.1-beta.1"):
/// missing minor and patch are 0, then semver precedence rules apply.
pub fn parse_version(s: &str) -> Option<semver::Version> {
    let s = s.trim();
    let s = s.strip_prefix(['v', 'V']).unwrap_or(s);
    let split = s.find(['-', '+']).unwrap_or(s.len());
    let (core, rest) = s.split_at(split);
    let parts: Vec<&str> = core.split('.').collect();
    if parts.is_empty()
        || parts.len() > 3
        || parts.iter().any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return None;
    }
    let mut full = parts.join(".");
    for _ in parts.len()..3 {
        full.push_str(".0");
    }
    semver::Version::parse(&(full + rest)).ok()
}

/// Compiles the `conditions` column: an array of rule objects. The error names what is wrong.
pub fn compile_conditions(conditions: &Value) -> Result<Vec<Condition>, String> {
    let rules =
        conditions.as_array().ok_or_else(|| format!("conditions must be a JSON array of rules, got {conditions}"))?;
    rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let obj = rule.as_object().ok_or_else(|| format!("condition {i} must be an object, got {rule}"))?;
            let attribute = obj
                .get("attribute")
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
                .ok_or_else(|| format!("condition {i} needs a non-empty string \"attribute\""))?;
            let op_name = obj
                .get("operator")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("condition {i} needs a string \"operator\" ({OPERATORS})"))?;
            let op = Operator::parse(op_name)
                .ok_or_else(|| format!("condition {i}: unknown operator {op_name:?} (one of {OPERATORS})"))?;
            let value = obj.get("value").cloned().ok_or_else(|| format!("condition {i} needs a \"value\""))?;
            let mut version = None;
            match op {
                Operator::In | Operator::NotIn if !value.is_array() => {
                    return Err(format!("condition {i}: {op_name} needs an array value, got {value}"))
                }
                Operator::StartsWith if !value.is_string() => {
                    return Err(format!("condition {i}: starts_with needs a string value, got {value}"))
                }
                Operator::Gt | Operator::Gte | Operator::Lt | Operator::Lte
                    if !(value.is_number() || value.is_string()) =>
                {
                    return Err(format!("condition {i}: {op_name} needs a number or string value, got {value}"))
                }
                Operator::SemverGte | Operator::SemverLt => {
                    version = Some(value.as_str().and_then(parse_version).ok_or_else(|| {
                        format!("condition {i}: {op_name} needs a version string like \"2.3.1\", got {value}")
                    })?);
                }
                _ => {}
            }
            Ok(Condition { path: attribute.split('.').map(str::to_owned).collect(), op, value, version })
        })
        .collect()
}

/// JSON equality with numbers compared by value (1 equals 1.0).
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

impl Condition {
    /// Whether the rule holds for `context`. A rule about an attribute the context lacks never
    /// holds (neq and not_in included): absence is not evidence.
    pub fn holds(&self, context: &Value) -> bool {
        let mut attr = context;
        for key in &self.path {
            match attr.get(key) {
                Some(v) if !v.is_null() => attr = v,
                _ => return false,
            }
        }
        let v = &self.value;
        match self.op {
            Operator::Eq => json_eq(attr, v),
            Operator::Neq => !json_eq(attr, v),
            Operator::In => v.as_array().is_some_and(|xs| xs.iter().any(|x| json_eq(attr, x))),
            Operator::NotIn => v.as_array().is_some_and(|xs| !xs.iter().any(|x| json_eq(attr, x))),
            Operator::Contains => match (attr, v) {
                (Value::String(s), Value::String(needle)) => s.contains(needle.as_str()),
                (Value::Array(xs), needle) => xs.iter().any(|x| json_eq(x, needle)),
                _ => false,
            },
            Operator::StartsWith => match (attr, v) {
                (Value::String(s), Value::String(prefix)) => s.starts_with(prefix.as_str()),
                _ => false,
            },
            Operator::Gt => compare(attr, v) == Some(Ordering::Greater),
            Operator::Gte => matches!(compare(attr, v), Some(Ordering::Greater | Ordering::Equal)),
            Operator::Lt => compare(attr, v) == Some(Ordering::Less),
            Operator::Lte => matches!(compare(attr, v), Some(Ordering::Less | Ordering::Equal)),
            Operator::SemverGte | Operator::SemverLt => {
                let (Some(have), Some(want)) = (attr.as_str().and_then(parse_version), &self.version) else {
                    return false;
                };
                (have >= *want) == (self.op == Operator::SemverGte)
            }
        }
    }
}

/// A weighted variant: `{"name": "blue", "weight": 30}`. Weights are relative (any
/// non-negative numbers, two decimals of precision).
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    pub name: String,
    weight: u64,
}

pub fn compile_variants(variants: &Value) -> Result<Vec<Variant>, String> {
    let list = variants.as_array().ok_or_else(|| format!("variants must be a JSON array, got {variants}"))?;
    let compiled = list
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let name = v
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty() && n.chars().count() <= 255)
                .ok_or_else(|| format!("variant {i} needs a string \"name\" of 1 to 255 characters, got {v}"))?;
            let weight = v
                .get("weight")
                .and_then(Value::as_f64)
                .filter(|w| w.is_finite() && *w >= 0.0 && *w <= 1e12)
                .ok_or_else(|| format!("variant {i} needs a \"weight\" between 0 and 10^12, got {v}"))?;
            Ok(Variant { name: name.to_owned(), weight: (weight * 100.0).round() as u64 })
        })
        .collect::<Result<Vec<_>, String>>()?;
    if !compiled.is_empty() && compiled.iter().all(|v| v.weight == 0) {
        return Err("variants need at least one positive weight".to_owned());
    }
    Ok(compiled)
}

/// The variant whose share of the total weight covers `bucket` (0..10000).
pub fn choose_variant(variants: &[Variant], bucket: u32) -> Option<&str> {
    // Wide arithmetic: up to 10^14 per weight (10^12 with two decimals) times any number of
    // variants times 10^4 buckets does not fit 64 bits.
    let total: u128 = variants.iter().map(|v| u128::from(v.weight)).sum();
    if total == 0 {
        return None;
    }
    let point = u128::from(bucket) * total / u128::from(BUCKETS);
    let mut cumulative = 0u128;
    for v in variants {
        cumulative += u128::from(v.weight);
        if point < cumulative {
            return Some(&v.name);
        }
    }
    None
}

/// A flag definition as evaluated. Rule columns that failed to compile keep their error, so only
/// evaluations of that flag fail (22023), not every flag.
#[derive(Clone, Debug)]
pub struct Flag {
    pub id: [u8; 16],
    pub enabled: bool,
    pub strategy: Strategy,
    /// rollout_percentage * 100, 0..=10000.
    pub percentage_bp: u32,
    /// Sorted, for binary search.
    pub target_users: Vec<[u8; 16]>,
    pub conditions: Result<Vec<Condition>, String>,
    pub variants: Result<Vec<Variant>, String>,
}

/// The answer and why: the reason is what the evaluation log records.
pub type Decision = (bool, &'static str);

impl Flag {
    /// Evaluates the flag for `user`; `context` is asked for only by `condition` flags (it is
    /// costly to convert, and most flags never need it).
    pub fn evaluate<'c>(
        &self,
        flag_key: &str,
        user: Option<&[u8; 16]>,
        context: impl FnOnce() -> Result<&'c Value, ContractError>,
    ) -> Result<Decision, ContractError> {
        if !self.enabled {
            return Ok((false, "disabled"));
        }
        Ok(match self.strategy {
            Strategy::All => (true, "all"),
            Strategy::None => (false, "none"),
            Strategy::UserList => (user.is_some_and(|u| self.target_users.binary_search(u).is_ok()), "user_list"),
            Strategy::Percentage => {
                let on = match user {
                    Some(u) => rollout_bucket(flag_key, u) < self.percentage_bp,
                    // Without a user there is no bucket: only a full rollout includes everyone.
                    None => self.percentage_bp >= BUCKETS as u32,
                };
                (on, "percentage")
            }
            Strategy::Condition => {
                let rules = self
                    .conditions
                    .as_ref()
                    .map_err(|e| ContractError::invalid("conditions", format!("feature flag {flag_key:?}: {e}")))?;
                let ctx = context()?;
                (rules.iter().all(|r| r.holds(ctx)), "condition")
            }
        })
    }

    /// The variant for `user` when the flag is on for them; variants are bucketed
    /// independently of the on/off decision.
    pub fn variant(&self, flag_key: &str, user: &[u8; 16]) -> Result<Option<&str>, ContractError> {
        let variants = self
            .variants
            .as_ref()
            .map_err(|e| ContractError::invalid("variants", format!("feature flag {flag_key:?}: {e}")))?;
        Ok(choose_variant(variants, variant_bucket(flag_key, user)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn uuid(s: &str) -> [u8; 16] {
        *uuid::Uuid::parse_str(s).unwrap().as_bytes()
    }

    fn flag(strategy: Strategy) -> Flag {
        Flag {
            id: [0; 16],
            enabled: true,
            strategy,
            percentage_bp: 0,
            target_users: vec![],
            conditions: Ok(vec![]),
            variants: Ok(vec![]),
        }
    }

    /// Computed independently with Python's xxhash (xxh3_64_intdigest); these must never change.
    #[test]
    fn pinned_buckets() {
        let cases = [
            ("new_checkout", "00000000-0000-0000-0000-000000000001", 4119, 422),
            ("new_checkout", "7c9e6679-7425-40de-944b-e07fc1f90ae7", 1586, 5819),
            ("dark_mode", "00000000-0000-0000-0000-000000000001", 5260, 626),
            ("dark_mode", "f47ac10b-58cc-4372-a567-0e02b2c3d479", 5869, 6796),
            ("driver-bonus.v2", "550e8400-e29b-41d4-a716-446655440000", 1075, 4416),
            ("ünïcode_flag", "550e8400-e29b-41d4-a716-446655440000", 2595, 9642),
        ];
        for (key, user, rollout, variant) in cases {
            assert_eq!(rollout_bucket(key, &uuid(user)), rollout, "{key} {user}");
            assert_eq!(variant_bucket(key, &uuid(user)), variant, "{key} {user}");
        }
    }

    #[test]
    fn environments() {
        assert_eq!(Environment::parse("staging").unwrap(), Environment::Staging);
        let err = Environment::parse("prod").unwrap_err();
        assert_eq!(err.sqlstate(), pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE);
        assert!(err.to_string().contains("\"prod\""), "{err}");
    }

    #[test]
    fn percentage_is_monotonic_and_null_user_needs_100() {
        let mut f = flag(Strategy::Percentage);
        let users: Vec<[u8; 16]> = (0u128..5000).map(|i| i.to_be_bytes()).collect();
        let on_at = |f: &Flag| -> Vec<bool> {
            users.iter().map(|u| f.evaluate("k", Some(u), || unreachable!()).unwrap().0).collect()
        };
        f.percentage_bp = 1000;
        let at10 = on_at(&f);
        f.percentage_bp = 2000;
        let at20 = on_at(&f);
        assert!(at10.iter().zip(&at20).all(|(a, b)| !a || *b));
        assert!(at20.iter().filter(|x| **x).count() > at10.iter().filter(|x| **x).count());
        assert!(!f.evaluate("k", None, || unreachable!()).unwrap().0);
        f.percentage_bp = 10000;
        assert!(f.evaluate("k", None, || unreachable!()).unwrap().0);
    }

    #[test]
    fn disabled_and_user_list() {
        let mut f = flag(Strategy::UserList);
        let a = uuid("00000000-0000-0000-0000-00000000000a");
        f.target_users = vec![a];
        assert_eq!(f.evaluate("k", Some(&a), || unreachable!()).unwrap(), (true, "user_list"));
        assert!(!f.evaluate("k", Some(&[9; 16]), || unreachable!()).unwrap().0);
        assert!(!f.evaluate("k", None, || unreachable!()).unwrap().0);
        f.enabled = false;
        assert_eq!(f.evaluate("k", Some(&a), || unreachable!()).unwrap(), (false, "disabled"));
    }

    fn holds(rule: Value, ctx: Value) -> bool {
        compile_conditions(&json!([rule])).unwrap()[0].holds(&ctx)
    }

    #[test]
    fn every_operator() {
        let ctx = json!({"country": "RW", "age": 30, "tags": ["beta", "vip"], "app": {"version": "2.10.1"}, "name": "kigali-driver"});
        assert!(holds(json!({"attribute": "country", "operator": "eq", "value": "RW"}), ctx.clone()));
        assert!(holds(json!({"attribute": "age", "operator": "eq", "value": 30.0}), ctx.clone()));
        assert!(!holds(json!({"attribute": "country", "operator": "neq", "value": "RW"}), ctx.clone()));
        assert!(holds(json!({"attribute": "country", "operator": "in", "value": ["KE", "RW"]}), ctx.clone()));
        assert!(holds(json!({"attribute": "country", "operator": "not_in", "value": ["KE"]}), ctx.clone()));
        assert!(holds(json!({"attribute": "tags", "operator": "contains", "value": "vip"}), ctx.clone()));
        assert!(holds(json!({"attribute": "name", "operator": "contains", "value": "gali"}), ctx.clone()));
        assert!(holds(json!({"attribute": "name", "operator": "starts_with", "value": "kigali"}), ctx.clone()));
        assert!(holds(json!({"attribute": "age", "operator": "gt", "value": 29}), ctx.clone()));
        assert!(holds(json!({"attribute": "age", "operator": "gte", "value": 30}), ctx.clone()));
        assert!(!holds(json!({"attribute": "age", "operator": "lt", "value": 30}), ctx.clone()));
        assert!(holds(json!({"attribute": "age", "operator": "lte", "value": 30}), ctx.clone()));
        // Versions compare by semver precedence, not as strings: 2.10.1 > 2.9.
        assert!(holds(json!({"attribute": "app.version", "operator": "semver_gte", "value": "2.9"}), ctx.clone()));
        assert!(!holds(json!({"attribute": "app.version", "operator": "semver_lt", "value": "v2.9"}), ctx.clone()));
        assert!(holds(json!({"attribute": "app.version", "operator": "semver_lt", "value": "3"}), ctx.clone()));
        // A missing attribute never satisfies a rule, negative ones included.
        assert!(!holds(json!({"attribute": "city", "operator": "neq", "value": "x"}), ctx.clone()));
        assert!(!holds(json!({"attribute": "city", "operator": "not_in", "value": ["x"]}), ctx.clone()));
        // Mismatched types do not compare.
        assert!(!holds(json!({"attribute": "country", "operator": "gt", "value": 3}), ctx));
    }

    #[test]
    fn versions() {
        assert!(parse_version("2.3.1-beta.1").unwrap() < parse_version("2.3.1").unwrap());
        assert_eq!(parse_version("v2").unwrap(), semver::Version::new(2, 0, 0));
        for bad in ["", "2.x", "1.2.3.4", "abc", "-1"] {
            assert!(parse_version(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn malformed_conditions_name_the_problem() {
        for (bad, says) in [
            (json!({}), "must be a JSON array"),
            (json!([1]), "condition 0 must be an object"),
            (json!([{"operator": "eq", "value": 1}]), "\"attribute\""),
            (json!([{"attribute": "a", "operator": "like", "value": 1}]), "unknown operator \"like\""),
            (json!([{"attribute": "a", "operator": "eq"}]), "needs a \"value\""),
            (json!([{"attribute": "a", "operator": "in", "value": "x"}]), "needs an array"),
            (json!([{"attribute": "a", "operator": "semver_gte", "value": "two"}]), "version string"),
        ] {
            let err = compile_conditions(&bad).unwrap_err();
            assert!(err.contains(says), "{bad} -> {err}");
        }
    }

    #[test]
    fn variants_are_weighted() {
        let v = compile_variants(&json!([{"name": "a", "weight": 1}, {"name": "b", "weight": 3}])).unwrap();
        let mut counts = [0; 2];
        for b in 0..BUCKETS as u32 {
            counts[(choose_variant(&v, b).unwrap() == "b") as usize] += 1;
        }
        assert_eq!(counts, [2500, 7500]);
        assert!(compile_variants(&json!([{"name": "a", "weight": 0}])).is_err());
        assert!(compile_variants(&json!([{"name": "a", "weight": -1}])).is_err());
        assert!(compile_variants(&json!({"a": 1})).is_err());
        assert_eq!(choose_variant(&[], 10), None);
        // 300 variants at the largest weight: 0.2.0 overflowed and chose 19 of them; each gets
        // its share now.
        let heavy: Vec<Value> = (0..300).map(|i| json!({"name": format!("v{i}"), "weight": 1e12})).collect();
        let v = compile_variants(&Value::Array(heavy)).unwrap();
        let chosen: std::collections::HashSet<&str> =
            (0..BUCKETS as u32).filter_map(|b| choose_variant(&v, b)).collect();
        assert_eq!(chosen.len(), 300);
    }
}
