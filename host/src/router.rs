//! HTTP routing: exact paths and `/*` prefixes, most specific first.

use std::collections::HashMap;

/// One route of the route table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `/exact` or `/prefix/*`.
    pub pattern: String,
    /// The function it invokes.
    pub function: String,
}

/// The compiled route table.
#[derive(Debug, Default)]
pub(crate) struct Router {
    exact: HashMap<String, String>,
    /// `(prefix without "/*", function)`, longest prefix first.
    prefixes: Vec<(String, String)>,
}

impl Router {
    /// Add a route; fails if the pattern is already taken by another function.
    pub(crate) fn add(&mut self, route: &Route) -> Result<(), String> {
        let taken = |other: &String| {
            Err(format!(
                "route `{}` is already served by function `{other}`",
                route.pattern
            ))
        };
        match route.pattern.strip_suffix("/*") {
            Some(prefix) => {
                if let Some((_, other)) = self.prefixes.iter().find(|(p, _)| p == prefix) {
                    return taken(other);
                }
                self.prefixes
                    .push((prefix.to_string(), route.function.clone()));
                self.prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
            }
            None => {
                if let Some(other) = self.exact.get(&route.pattern) {
                    return taken(other);
                }
                self.exact
                    .insert(route.pattern.clone(), route.function.clone());
            }
        }
        Ok(())
    }

    /// The function serving `path` (no query string).
    pub(crate) fn find(&self, path: &str) -> Option<&str> {
        if let Some(f) = self.exact.get(path) {
            return Some(f);
        }
        self.prefixes
            .iter()
            .find(|(prefix, _)| {
                // `/a/*` matches `/a`, `/a/` and `/a/...` but not `/ab`.
                path.strip_prefix(prefix.as_str()).is_some_and(|rest| {
                    rest.is_empty() || rest.starts_with('/') || prefix.is_empty()
                })
            })
            .map(|(_, f)| f.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(pattern: &str, function: &str) -> Route {
        Route {
            pattern: pattern.into(),
            function: function.into(),
        }
    }

    #[test]
    fn most_specific_wins() {
        let mut r = Router::default();
        r.add(&route("/hello", "hello")).unwrap();
        r.add(&route("/hello/*", "hello")).unwrap();
        r.add(&route("/hello/admin/*", "admin")).unwrap();
        r.add(&route("/*", "fallback")).unwrap();
        assert_eq!(r.find("/hello"), Some("hello"));
        assert_eq!(r.find("/hello/x/y"), Some("hello"));
        assert_eq!(r.find("/hello/admin"), Some("admin"));
        assert_eq!(r.find("/hello/admin/users"), Some("admin"));
        assert_eq!(r.find("/helloworld"), Some("fallback"));
        assert_eq!(r.find("/"), Some("fallback"));
    }

    #[test]
    fn no_match_and_conflicts() {
        let mut r = Router::default();
        r.add(&route("/a/*", "a")).unwrap();
        assert_eq!(r.find("/ab"), None);
        assert_eq!(r.find("/"), None);
        assert!(r
            .add(&route("/a/*", "b"))
            .unwrap_err()
            .contains("function `a`"));
    }
}
