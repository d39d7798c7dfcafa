//! The data-flow pieces of the States Language the executor needs: reference paths
//! (`$`, `$.order.total`, `$.items[0]`), `ResultPath` placement, error matching for
//! `Retry`/`Catch`, and Choice rule evaluation.

use serde_json::{Map, Value};

/// One step of a reference path.
#[derive(Debug, PartialEq)]
enum Segment<'a> {
    Field(&'a str),
    Index(usize),
}

/// Split `$.a.b[2]` into segments; `Err` says what is wrong with the path.
fn segments(path: &str) -> Result<Vec<Segment<'_>>, String> {
    let Some(rest) = path.strip_prefix('$') else {
        return Err(format!("path `{path}` must start with `$`"));
    };
    let mut out = Vec::new();
    let mut rest = rest;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return Err(format!("path `{path}` has an empty field name"));
            }
            out.push(Segment::Field(&r[..end]));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r
                .find(']')
                .ok_or_else(|| format!("path `{path}` has an unclosed `[`"))?;
            let index = r[..end]
                .parse()
                .map_err(|_| format!("path `{path}`: `[{}]` is not an array index", &r[..end]))?;
            out.push(Segment::Index(index));
            rest = &r[end + 1..];
        } else {
            return Err(format!(
                "path `{path}`: expected `.field` or `[index]` at `{rest}`"
            ));
        }
    }
    Ok(out)
}

/// Check a path without evaluating it (definitions are checked before they run).
pub fn check(path: &str) -> Result<(), String> {
    segments(path).map(drop)
}

/// The value at `path` in `value`, if present.
pub fn get<'v>(value: &'v Value, path: &str) -> Option<&'v Value> {
    let mut at = value;
    for s in segments(path).ok()? {
        at = match s {
            Segment::Field(f) => at.as_object()?.get(f)?,
            Segment::Index(i) => at.as_array()?.get(i)?,
        };
    }
    Some(at)
}

/// Place `result` in `input` at `result_path` (`Some("$")` or `None`: the result replaces the
/// input; `Some(path)`: set there, creating objects on the way).
pub fn place(input: &Value, result_path: Option<&str>, result: Value) -> Result<Value, String> {
    let path = result_path.unwrap_or("$");
    let segs = segments(path)?;
    if segs.is_empty() {
        return Ok(result);
    }
    let mut out = input.clone();
    if !out.is_object() {
        out = Value::Object(Map::new());
    }
    let mut at = &mut out;
    for (i, s) in segs.iter().enumerate() {
        let last = i + 1 == segs.len();
        match s {
            Segment::Field(f) => {
                if !at.is_object() {
                    *at = Value::Object(Map::new());
                }
                let map = at.as_object_mut().expect("made an object above");
                if last {
                    map.insert(f.to_string(), result);
                    return Ok(out);
                }
                at = map.entry(f.to_string()).or_insert(Value::Null);
            }
            Segment::Index(_) => {
                return Err(format!(
                    "ResultPath `{path}` indexes an array; a ResultPath may only name fields"
                ))
            }
        }
    }
    Ok(out)
}

/// Whether an `ErrorEquals` list catches `error` (`States.ALL` catches everything,
/// `States.TaskFailed` every error but `States.Timeout`).
pub fn error_matches(error_equals: &[String], error: &str) -> bool {
    error_equals.iter().any(|e| {
        e == error || e == "States.ALL" || (e == "States.TaskFailed" && error != "States.Timeout")
    })
}

/// The comparison operators a Choice rule may use.
pub const OPERATORS: &[&str] = &[
    "StringEquals",
    "StringLessThan",
    "StringGreaterThan",
    "StringLessThanEquals",
    "StringGreaterThanEquals",
    "StringMatches",
    "NumericEquals",
    "NumericLessThan",
    "NumericGreaterThan",
    "NumericLessThanEquals",
    "NumericGreaterThanEquals",
    "BooleanEquals",
    "TimestampEquals",
    "TimestampLessThan",
    "TimestampGreaterThan",
    "TimestampLessThanEquals",
    "TimestampGreaterThanEquals",
    "IsPresent",
    "IsNull",
    "IsString",
    "IsNumeric",
    "IsBoolean",
    "IsTimestamp",
];

/// Check one Choice rule (`Variable` + one operator, or `And`/`Or`/`Not` of rules).
pub fn check_rule(variable: Option<&str>, test: &Map<String, Value>) -> Result<(), String> {
    let ops: Vec<&String> = test.keys().filter(|k| *k != "Next").collect();
    let [op] = ops.as_slice() else {
        return Err(format!(
            "a Choice rule needs exactly one comparison, found {}",
            if ops.is_empty() {
                "none".to_string()
            } else {
                ops.iter()
                    .map(|o| format!("`{o}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ));
    };
    match op.as_str() {
        "And" | "Or" => {
            let list = test[*op]
                .as_array()
                .filter(|l| !l.is_empty())
                .ok_or_else(|| format!("`{op}` needs a non-empty list of rules"))?;
            for r in list {
                nested(r)?;
            }
            Ok(())
        }
        "Not" => nested(&test["Not"]),
        name => {
            let base = name.strip_suffix("Path").unwrap_or(name);
            if !OPERATORS.contains(&base) {
                return Err(format!(
                    "unknown comparison `{name}`; use one of {} (or the same with `Path`)",
                    OPERATORS.join(", ")
                ));
            }
            let variable = variable.ok_or_else(|| format!("`{name}` needs a `Variable`"))?;
            check(variable)?;
            if name.ends_with("Path") {
                check(
                    test[*op]
                        .as_str()
                        .ok_or_else(|| format!("`{name}` takes a path"))?,
                )?;
            }
            Ok(())
        }
    }
}

fn nested(rule: &Value) -> Result<(), String> {
    let map = rule
        .as_object()
        .ok_or_else(|| "a nested Choice rule must be an object".to_string())?;
    let mut test = map.clone();
    let variable = test.remove("Variable");
    check_rule(variable.as_ref().and_then(Value::as_str), &test)
}

/// Evaluate a checked Choice rule against `input`.
pub fn evaluate(variable: Option<&str>, test: &Map<String, Value>, input: &Value) -> bool {
    let Some((op, operand)) = test.iter().find(|(k, _)| *k != "Next") else {
        return false;
    };
    let nested_eval = |rule: &Value| {
        let Some(map) = rule.as_object() else {
            return false;
        };
        let mut t = map.clone();
        let v = t.remove("Variable");
        evaluate(v.as_ref().and_then(Value::as_str), &t, input)
    };
    match op.as_str() {
        "And" => {
            return operand
                .as_array()
                .is_some_and(|l| l.iter().all(nested_eval))
        }
        "Or" => {
            return operand
                .as_array()
                .is_some_and(|l| l.iter().any(nested_eval))
        }
        "Not" => return !nested_eval(operand),
        _ => {}
    }
    let value = variable.and_then(|v| get(input, v));
    let (base, operand) = match op.strip_suffix("Path") {
        Some(base) => (base, operand.as_str().and_then(|p| get(input, p))),
        None => (op.as_str(), Some(operand)),
    };
    match base {
        "IsPresent" => return value.is_some() == (operand == Some(&Value::Bool(true))),
        "IsNull" => return value.is_some_and(Value::is_null) == truthy(operand),
        "IsString" => return value.is_some_and(Value::is_string) == truthy(operand),
        "IsNumeric" => return value.is_some_and(Value::is_number) == truthy(operand),
        "IsBoolean" => return value.is_some_and(Value::is_boolean) == truthy(operand),
        "IsTimestamp" => {
            return value.and_then(timestamp).is_some() == truthy(operand);
        }
        _ => {}
    }
    let (Some(value), Some(operand)) = (value, operand) else {
        return false;
    };
    use std::cmp::Ordering::*;
    let ordering = if base.starts_with("String") {
        if base == "StringMatches" {
            return match (value.as_str(), operand.as_str()) {
                (Some(v), Some(p)) => wildcard(p, v),
                _ => false,
            };
        }
        match (value.as_str(), operand.as_str()) {
            (Some(v), Some(o)) => v.cmp(o),
            _ => return false,
        }
    } else if base.starts_with("Numeric") {
        match (value.as_f64(), operand.as_f64()) {
            (Some(v), Some(o)) => v.partial_cmp(&o).unwrap_or(Less),
            _ => return false,
        }
    } else if base.starts_with("Timestamp") {
        match (timestamp(value), timestamp(operand)) {
            (Some(v), Some(o)) => v.cmp(&o),
            _ => return false,
        }
    } else if base == "BooleanEquals" {
        return value.as_bool().is_some() && value.as_bool() == operand.as_bool();
    } else {
        return false;
    };
    if base.ends_with("LessThanEquals") {
        ordering != Greater
    } else if base.ends_with("GreaterThanEquals") {
        ordering != Less
    } else if base.ends_with("LessThan") {
        ordering == Less
    } else if base.ends_with("GreaterThan") {
        ordering == Greater
    } else {
        ordering == Equal
    }
}

fn truthy(operand: Option<&Value>) -> bool {
    operand == Some(&Value::Bool(true))
}

fn timestamp(v: &Value) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    chrono::DateTime::parse_from_rfc3339(v.as_str()?).ok()
}

/// `*` matches any run of characters (the only wildcard `StringMatches` has).
fn wildcard(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for middle in &parts[1..parts.len() - 1] {
        match rest.find(middle) {
            Some(i) => rest = &rest[i + middle.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_read_and_place_values() {
        let v = json!({"order": {"total": 120, "items": [{"sku": "a"}]}});
        assert_eq!(get(&v, "$.order.total"), Some(&json!(120)));
        assert_eq!(get(&v, "$.order.items[0].sku"), Some(&json!("a")));
        assert_eq!(get(&v, "$"), Some(&v));
        assert_eq!(get(&v, "$.nope"), None);
        assert_eq!(place(&v, None, json!(1)).unwrap(), json!(1));
        let placed = place(&v, Some("$.payment.id"), json!("p-1")).unwrap();
        assert_eq!(placed["payment"]["id"], json!("p-1"));
        assert_eq!(placed["order"]["total"], json!(120));
        assert!(check("order").is_err());
        assert!(check("$.a[x]").is_err());
    }

    #[test]
    fn errors_match_like_step_functions() {
        let all = vec!["States.ALL".to_string()];
        assert!(error_matches(&all, "PaymentDeclined"));
        let failed = vec!["States.TaskFailed".to_string()];
        assert!(error_matches(&failed, "PaymentDeclined"));
        assert!(!error_matches(&failed, "States.Timeout"));
        assert!(!error_matches(&["Busy".to_string()], "PaymentDeclined"));
    }

    fn rule(v: Value) -> (Option<String>, Map<String, Value>) {
        let mut m = v.as_object().unwrap().clone();
        let var = m
            .remove("Variable")
            .and_then(|v| v.as_str().map(String::from));
        (var, m)
    }

    #[test]
    fn choice_rules_compare_like_step_functions() {
        let input =
            json!({"total": 150, "country": "NL", "vip": true, "at": "2026-01-02T00:00:00Z"});
        let holds = |r: Value| {
            let (v, t) = rule(r);
            check_rule(v.as_deref(), &t).unwrap();
            evaluate(v.as_deref(), &t, &input)
        };
        assert!(holds(
            json!({"Variable": "$.total", "NumericGreaterThan": 100})
        ));
        assert!(!holds(
            json!({"Variable": "$.total", "NumericLessThanEquals": 100})
        ));
        assert!(holds(
            json!({"Variable": "$.country", "StringEquals": "NL"})
        ));
        assert!(holds(
            json!({"Variable": "$.country", "StringMatches": "N*"})
        ));
        assert!(holds(json!({"Variable": "$.vip", "BooleanEquals": true})));
        assert!(holds(json!({"Variable": "$.missing", "IsPresent": false})));
        assert!(holds(
            json!({"Variable": "$.at", "TimestampLessThan": "2026-06-01T00:00:00Z"})
        ));
        assert!(holds(json!({"And": [
            {"Variable": "$.total", "NumericGreaterThanEquals": 150},
            {"Not": {"Variable": "$.country", "StringEquals": "US"}}]})));
        assert!(holds(
            json!({"Variable": "$.total", "NumericEqualsPath": "$.total"})
        ));
        let (v, t) = rule(json!({"Variable": "$.total", "NumericBiggerThan": 1}));
        assert!(check_rule(v.as_deref(), &t)
            .unwrap_err()
            .contains("unknown comparison `NumericBiggerThan`"));
    }
}
