//! Config values from environment variables: `PREFIX_NAME=value` overrides (or adds) the
//! function's `wasi:config` value `name`. Used by the Lambda adapter, where environment
//! variables are the platform's way to change configuration without redeploying code.
//!
//! Environment variable names allow only letters, digits and `_`, while config keys are
//! usually kebab-case, so names are compared after upper-casing and mapping `-` and `.` to `_`:
//! `WASMFN_CONFIG_API_URL` overrides `api-url`. A variable naming no declared key adds one,
//! lower-cased with `_` turned into `-`.

/// The environment variable that overrides config key `key` under `prefix`.
pub fn variable_for(prefix: &str, key: &str) -> String {
    let mut name = String::with_capacity(prefix.len() + key.len());
    name.push_str(prefix);
    name.extend(key.chars().map(|c| match c {
        '-' | '.' => '_',
        c => c.to_ascii_uppercase(),
    }));
    name
}

/// Lay `vars` (name, value pairs, e.g. `std::env::vars()`) whose names start with `prefix` over
/// `config`.
pub fn overlay(
    config: &mut Vec<(String, String)>,
    prefix: &str,
    vars: impl IntoIterator<Item = (String, String)>,
) {
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix(prefix).filter(|r| !r.is_empty()) else {
            continue;
        };
        match config
            .iter_mut()
            .find(|(key, _)| variable_for(prefix, key) == name)
        {
            Some((_, v)) => *v = value,
            None => config.push((rest.to_ascii_lowercase().replace('_', "-"), value)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_declared_keys_and_adds_new_ones() {
        let mut config = vec![
            ("api-url".to_string(), "http://old".to_string()),
            ("greeting".to_string(), "hi".to_string()),
        ];
        let vars = [
            ("WASMFN_CONFIG_API_URL", "http://new"),
            ("WASMFN_CONFIG_RETRY_LIMIT", "3"),
            ("WASMFN_CONFIG_", "ignored: no key"),
            ("PATH", "/bin"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        overlay(&mut config, "WASMFN_CONFIG_", vars);
        assert_eq!(
            config,
            [
                ("api-url", "http://new"),
                ("greeting", "hi"),
                ("retry-limit", "3")
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert_eq!(
            variable_for("WASMFN_CONFIG_", "db.pool-size"),
            "WASMFN_CONFIG_DB_POOL_SIZE"
        );
    }
}
