//! Content filters, as EventBridge event patterns and SNS filter policies write them: a JSON
//! object whose leaves are lists of alternatives.
//!
//! ```json
//! {"source": ["shop.orders"],
//!  "detail": {"total": [{"numeric": [">=", 100, "<", 1000]}],
//!             "customer": {"tier": ["gold", {"prefix": "plat"}]},
//!             "coupon": [{"exists": false}]}}
//! ```
//! A field matches when any alternative does: a literal (string, number, boolean, null)
//! compared exactly, `{"prefix": "..."}`, `{"suffix": "..."}`, `{"numeric": [op, n, ...]}`
//! (ops `=`, `<`, `<=`, `>`, `>=`), `{"exists": bool}` or `{"anything-but": [...]}`. When the
//! event's value is a list, any element may match. Every field of the pattern must match.

use serde_json::{Map, Value};

/// A compiled pattern.
#[derive(Clone, Debug, PartialEq)]
pub struct Pattern {
    fields: Vec<(String, Field)>,
}

#[derive(Clone, Debug, PartialEq)]
enum Field {
    Nested(Pattern),
    AnyOf(Vec<Condition>),
}

#[derive(Clone, Debug, PartialEq)]
enum Condition {
    Exact(Value),
    Prefix(String),
    Suffix(String),
    Numeric(Vec<(Cmp, f64)>),
    Exists(bool),
    AnythingBut(Vec<Value>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Pattern {
    /// Compile a pattern; the error names the field and what to write instead.
    pub fn compile(value: &Value) -> Result<Pattern, String> {
        Self::compile_at(value, "")
    }

    /// A pattern matching everything.
    pub fn any() -> Pattern {
        Pattern { fields: Vec::new() }
    }

    fn compile_at(value: &Value, at: &str) -> Result<Pattern, String> {
        let Some(map) = value.as_object() else {
            return Err(format!(
                "{}a pattern must be an object of fields",
                prefix(at)
            ));
        };
        let mut fields = Vec::new();
        for (key, v) in map {
            let path = if at.is_empty() {
                key.clone()
            } else {
                format!("{at}.{key}")
            };
            let field = match v {
                Value::Object(_) => Field::Nested(Self::compile_at(v, &path)?),
                Value::Array(list) if !list.is_empty() => Field::AnyOf(
                    list.iter()
                        .map(|c| condition(c, &path))
                        .collect::<Result<_, _>>()?,
                ),
                _ => {
                    return Err(format!(
                    "field `{path}`: give a non-empty list of alternatives, e.g. [\"value\"] or \
                         [{{ prefix = \"abc\" }}]"
                ))
                }
            };
            fields.push((key.clone(), field));
        }
        Ok(Pattern { fields })
    }

    /// Whether `object` (an event or a message's attributes) matches.
    pub fn matches(&self, object: &Map<String, Value>) -> bool {
        self.fields.iter().all(|(key, field)| {
            let value = object.get(key);
            match field {
                Field::Nested(p) => value
                    .and_then(Value::as_object)
                    .is_some_and(|o| p.matches(o)),
                Field::AnyOf(conditions) => conditions.iter().any(|c| c.holds(value)),
            }
        })
    }
}

fn prefix(at: &str) -> String {
    if at.is_empty() {
        String::new()
    } else {
        format!("field `{at}`: ")
    }
}

fn condition(v: &Value, path: &str) -> Result<Condition, String> {
    let Value::Object(map) = v else {
        return Ok(Condition::Exact(v.clone()));
    };
    let bad = |what: &str| format!("field `{path}`: {what}");
    let [(op, arg)] = map.iter().collect::<Vec<_>>()[..] else {
        return Err(bad(
            "a condition object has exactly one key: prefix, suffix, numeric, exists or anything-but",
        ));
    };
    Ok(match op.as_str() {
        "prefix" => Condition::Prefix(
            arg.as_str()
                .ok_or_else(|| bad("`prefix` takes a string"))?
                .to_string(),
        ),
        "suffix" => Condition::Suffix(
            arg.as_str()
                .ok_or_else(|| bad("`suffix` takes a string"))?
                .to_string(),
        ),
        "exists" => Condition::Exists(
            arg.as_bool()
                .ok_or_else(|| bad("`exists` takes true or false"))?,
        ),
        "anything-but" => Condition::AnythingBut(match arg {
            Value::Array(l) => l.clone(),
            other => vec![other.clone()],
        }),
        "numeric" => {
            let list = arg
                .as_array()
                .filter(|l| !l.is_empty() && l.len() % 2 == 0)
                .ok_or_else(|| {
                    bad("`numeric` takes pairs: [\">=\", 100] or [\">\", 0, \"<=\", 5]")
                })?;
            let mut out = Vec::new();
            for pair in list.chunks(2) {
                let cmp = match pair[0].as_str() {
                    Some("=") => Cmp::Eq,
                    Some("<") => Cmp::Lt,
                    Some("<=") => Cmp::Le,
                    Some(">") => Cmp::Gt,
                    Some(">=") => Cmp::Ge,
                    _ => return Err(bad("`numeric` operators are =, <, <=, > and >=")),
                };
                let n = pair[1]
                    .as_f64()
                    .ok_or_else(|| bad("`numeric` compares with numbers"))?;
                out.push((cmp, n));
            }
            Condition::Numeric(out)
        }
        other => {
            return Err(bad(&format!(
                "unknown condition `{other}`; use prefix, suffix, numeric, exists or anything-but"
            )))
        }
    })
}

impl Condition {
    fn holds(&self, value: Option<&Value>) -> bool {
        match (self, value) {
            (Condition::Exists(want), v) => v.is_some() == *want,
            (_, None) => false,
            (Condition::AnythingBut(list), Some(Value::Array(items))) => {
                items.iter().all(|i| !list.contains(i))
            }
            (Condition::AnythingBut(list), Some(v)) => !list.contains(v),
            (_, Some(Value::Array(items))) => items.iter().any(|i| self.holds_one(i)),
            (_, Some(v)) => self.holds_one(v),
        }
    }

    fn holds_one(&self, v: &Value) -> bool {
        match self {
            Condition::Exact(want) => match (want, v) {
                (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
                _ => want == v,
            },
            Condition::Prefix(p) => v.as_str().is_some_and(|s| s.starts_with(p.as_str())),
            Condition::Suffix(p) => v.as_str().is_some_and(|s| s.ends_with(p.as_str())),
            Condition::Numeric(tests) => {
                // Attributes are strings: "120" compares as a number, as SNS does.
                let n = v
                    .as_f64()
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()));
                n.is_some_and(|n| {
                    tests.iter().all(|(cmp, k)| match cmp {
                        Cmp::Eq => n == *k,
                        Cmp::Lt => n < *k,
                        Cmp::Le => n <= *k,
                        Cmp::Gt => n > *k,
                        Cmp::Ge => n >= *k,
                    })
                })
            }
            Condition::Exists(_) | Condition::AnythingBut(_) => unreachable!("handled in holds"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn matches(pattern: Value, event: Value) -> bool {
        Pattern::compile(&pattern)
            .unwrap()
            .matches(event.as_object().unwrap())
    }

    #[test]
    fn exact_prefix_numeric_and_exists() {
        let p = json!({"source": ["shop.orders"], "type": ["OrderPlaced", {"prefix": "Order"}],
            "detail": {"total": [{"numeric": [">=", 100, "<", 1000]}],
                       "coupon": [{"exists": false}], "tier": [{"anything-but": ["free"]}]}});
        let ev = |total: Value, extra: Value| {
            let mut d = json!({"total": total, "tier": "gold"});
            d.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            json!({"source": "shop.orders", "type": "OrderShipped", "detail": d})
        };
        assert!(matches(p.clone(), ev(json!(150), json!({}))));
        assert!(!matches(p.clone(), ev(json!(50), json!({}))));
        assert!(!matches(p.clone(), ev(json!(1000), json!({}))));
        assert!(!matches(p.clone(), ev(json!(150), json!({"coupon": "X"}))));
        assert!(!matches(p.clone(), ev(json!(150), json!({"tier": "free"}))));
        assert!(!matches(
            p,
            json!({"source": "shop.orders", "type": "OrderPlaced"})
        ));
    }

    #[test]
    fn lists_match_any_element_and_attributes_compare_as_numbers() {
        assert!(matches(
            json!({"tags": ["vip"]}),
            json!({"tags": ["new", "vip"]})
        ));
        assert!(matches(
            json!({"price": [{"numeric": [">", 10]}]}),
            json!({"price": "12.5"})
        ));
        assert!(matches(json!({"n": [1]}), json!({"n": 1.0})));
        assert!(matches(json!({}), json!({"anything": 1})));
    }

    #[test]
    fn bad_patterns_name_the_field() {
        let e =
            Pattern::compile(&json!({"detail": {"total": [{"numeric": ["~", 1]}]}})).unwrap_err();
        assert!(e.contains("field `detail.total`"), "{e}");
        let e = Pattern::compile(&json!({"source": "shop"})).unwrap_err();
        assert!(e.contains("field `source`: give a non-empty list"), "{e}");
        let e = Pattern::compile(&json!({"x": [{"regex": "a"}]})).unwrap_err();
        assert!(e.contains("unknown condition `regex`"), "{e}");
    }
}
