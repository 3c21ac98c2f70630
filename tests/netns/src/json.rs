//! Semantic JSON comparison with readable diffs.
//!
//! Objects compare by key (order ignored), arrays element by element, numbers
//! by value (`1` equals `1.0`).

use serde_json::Value;

fn numbers_equal(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x == y;
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x == y;
    }
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 200 {
        let cut = (0..=200)
            .rev()
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(0);
        format!("{}…", &s[..cut])
    } else {
        s
    }
}

fn key_path(path: &str, key: &str) -> String {
    if !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        format!("{path}.{key}")
    } else {
        format!("{path}[{}]", Value::String(key.to_owned()))
    }
}

fn diff(path: &str, actual: &Value, expected: &Value, subset: bool, out: &mut Vec<String>) {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            for (k, ev) in e {
                let p = key_path(path, k);
                match a.get(k) {
                    Some(av) => diff(&p, av, ev, subset, out),
                    None => out.push(format!("{p}: missing (expected {})", short(ev))),
                }
            }
            if !subset {
                for (k, av) in a {
                    if !e.contains_key(k) {
                        out.push(format!(
                            "{}: unexpected key (got {})",
                            key_path(path, k),
                            short(av)
                        ));
                    }
                }
            }
        }
        (Value::Array(a), Value::Array(e)) => {
            for (i, (av, ev)) in a.iter().zip(e).enumerate() {
                diff(&format!("{path}[{i}]"), av, ev, subset, out);
            }
            for (i, ev) in e.iter().enumerate().skip(a.len()) {
                out.push(format!("{path}[{i}]: missing (expected {})", short(ev)));
            }
            for (i, av) in a.iter().enumerate().skip(e.len()) {
                out.push(format!(
                    "{path}[{i}]: unexpected element (got {})",
                    short(av)
                ));
            }
        }
        (Value::Number(a), Value::Number(e)) if numbers_equal(a, e) => {}
        (a, e) if a == e => {}
        (a, e) => out.push(format!("{path}: expected {}, got {}", short(e), short(a))),
    }
}

/// Every difference between `actual` and `expected`, one line each, as
/// `$.path: expected X, got Y` / `missing` / `unexpected key`. Empty if equal.
pub fn json_diff(actual: &Value, expected: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff("$", actual, expected, false, &mut out);
    out
}

/// Like [`json_diff`], but keys of `actual` absent from `expected` are allowed
/// (at every depth); arrays must still match in length.
pub fn json_subset_diff(actual: &Value, expected: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff("$", actual, expected, true, &mut out);
    out
}

/// Semantic equality (key order ignored, `1 == 1.0`).
pub fn json_eq(actual: &Value, expected: &Value) -> bool {
    json_diff(actual, expected).is_empty()
}

fn report(kind: &str, diffs: &[String], actual: &Value, expected: &Value) -> String {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string());
    format!(
        "JSON {kind} failed: {} difference(s)\n  {}\n--- expected ---\n{}\n--- actual ---\n{}",
        diffs.len(),
        diffs.join("\n  "),
        pretty(expected),
        pretty(actual)
    )
}

/// Panics with a readable diff unless `actual` equals `expected` semantically.
#[track_caller]
pub fn assert_json_eq(actual: &Value, expected: &Value) {
    let d = json_diff(actual, expected);
    if !d.is_empty() {
        panic!("{}", report("equality", &d, actual, expected));
    }
}

/// Panics with a readable diff unless `actual` contains `expected` (extra
/// object keys in `actual` allowed at every depth, e.g. random MACs).
#[track_caller]
pub fn assert_json_subset(actual: &Value, expected: &Value) {
    let d = json_subset_diff(actual, expected);
    if !d.is_empty() {
        panic!("{}", report("subset", &d, actual, expected));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_ignores_key_order_and_number_repr() {
        let a: Value = serde_json::from_str(r#"{"b":1,"a":[1,{"x":2.0}]}"#).unwrap();
        let b = json!({"a": [1, {"x": 2}], "b": 1.0});
        assert!(json_eq(&a, &b), "{:?}", json_diff(&a, &b));
        assert_json_eq(&a, &b);
    }

    #[test]
    fn diff_lists_paths() {
        let actual = json!({"ips": [{"address": "10.0.0.3/24"}], "extra": true, "dns": {}});
        let expected = json!({"ips": [{"address": "10.0.0.2/24"}, {"address": "::2/64"}], "cniVersion": "1.0.0", "dns": {}});
        let d = json_diff(&actual, &expected);
        assert_eq!(
            d,
            vec![
                r#"$.ips[0].address: expected "10.0.0.2/24", got "10.0.0.3/24""#.to_owned(),
                r#"$.ips[1]: missing (expected {"address":"::2/64"})"#.to_owned(),
                r#"$.cniVersion: missing (expected "1.0.0")"#.to_owned(),
                "$.extra: unexpected key (got true)".to_owned(),
            ]
        );
    }

    #[test]
    fn odd_keys_are_quoted() {
        let d = json_diff(&json!({"cni.dev/x": 1}), &json!({"cni.dev/x": 2}));
        assert_eq!(d, vec![r#"$["cni.dev/x"]: expected 2, got 1"#.to_owned()]);
    }

    #[test]
    fn subset_allows_extra_keys_only() {
        let actual = json!({"interfaces": [{"name": "eth0", "mac": "aa:bb"}], "x": 1});
        assert!(json_subset_diff(&actual, &json!({"interfaces": [{"name": "eth0"}]})).is_empty());
        assert_eq!(
            json_subset_diff(&actual, &json!({"interfaces": []})).len(),
            1
        );
        assert_eq!(json_subset_diff(&actual, &json!({"y": 1})).len(), 1);
    }

    #[test]
    fn type_mismatch_and_large_numbers() {
        assert!(!json_eq(&json!("1"), &json!(1)));
        assert!(!json_eq(&json!(u64::MAX), &json!(u64::MAX - 1)));
        assert!(json_eq(&json!(u64::MAX), &json!(u64::MAX)));
        assert!(!json_eq(&json!(null), &json!({})));
    }

    #[test]
    fn assert_json_eq_message_is_readable() {
        let err = std::panic::catch_unwind(|| assert_json_eq(&json!({"a": 1}), &json!({"a": 2})))
            .expect_err("must panic");
        let msg = err.downcast_ref::<String>().expect("string panic");
        assert!(msg.contains("$.a: expected 2, got 1"), "{msg}");
        assert!(msg.contains("--- expected ---"), "{msg}");
    }
}
