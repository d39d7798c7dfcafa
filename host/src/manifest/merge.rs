//! `[env.NAME]` overlays: an environment's tables laid over the base manifest, on the parsed
//! tree (so every value keeps its position in the file for error messages).
//!
//! `[defaults]` and `[functions.NAME]` merge key by key (keys a section declares as
//! [`Merge::Entries`], such as `config` and `secrets`, entry by entry), so an environment states
//! only what differs. A [`Shape::Named`] table (`[kv.NAME]`, `[queues.NAME]`, ...) replaces the
//! base table of the same name whole: a store moving from SQLite to PostgreSQL shares no
//! settings with its embedded self. A [`Shape::Single`] table (`[queue-backend]`) replaces the
//! base one whole.

use toml::de::{DeTable, DeValue};
use toml::Spanned;
use wasmfn_host_core::manifest::{ManifestSection, Merge, Shape};

/// Lay `over` (the contents of an `[env.NAME]` table) over `base`.
pub(super) fn overlay<'i>(
    base: &mut DeTable<'i>,
    over: DeTable<'i>,
    sections: &[&dyn ManifestSection],
) {
    let merge_of_function_key = |k: &str| {
        sections
            .iter()
            .flat_map(|s| s.function_keys())
            .find(|f| f.name == k)
            .map_or(Merge::Replace, |f| f.merge)
    };
    for (key, value) in over {
        let shape = sections
            .iter()
            .flat_map(|s| s.tables())
            .find(|t| t.name == key.get_ref().as_ref())
            .map(|t| t.shape);
        match (key.get_ref().as_ref(), shape) {
            ("defaults", _) | (_, Some(Shape::Named)) => {
                merge_keys(base, key, value, &|_| Merge::Replace)
            }
            ("functions", _) => {
                let Some((functions, over_functions)) = tables(base, key, value) else {
                    continue;
                };
                for (name, f) in over_functions {
                    merge_keys(functions, name, f, &merge_of_function_key);
                }
            }
            // Single tables, and unknown keys (refused when the result is parsed).
            _ => {
                base.insert(key, value);
            }
        }
    }
}

type Key<'i> = Spanned<std::borrow::Cow<'i, str>>;

/// Merge table `value` into `base[key]` key by key; each key replaces, or (for `Entries`) merges
/// entry by entry.
fn merge_keys<'i>(
    base: &mut DeTable<'i>,
    key: Key<'i>,
    value: Spanned<DeValue<'i>>,
    merge_of: &dyn Fn(&str) -> Merge,
) {
    let Some((target, entries)) = tables(base, key, value) else {
        return;
    };
    for (k, v) in entries {
        if merge_of(k.get_ref()) == Merge::Entries {
            if let Some((inner, e)) = tables(target, k, v) {
                for (ek, ev) in e {
                    inner.insert(ek, ev);
                }
            }
        } else {
            target.insert(k, v);
        }
    }
}

/// When both `base[key]` and `value` are tables: the base table and the entries of `value`,
/// to merge. Otherwise `value` is set as `base[key]` and there is nothing to merge.
fn tables<'a, 'i>(
    base: &'a mut DeTable<'i>,
    key: Key<'i>,
    value: Spanned<DeValue<'i>>,
) -> Option<(&'a mut DeTable<'i>, DeTable<'i>)> {
    let base_is_table = base
        .get(key.get_ref().as_ref())
        .is_some_and(|b| b.get_ref().is_table());
    if !(base_is_table && value.get_ref().is_table()) {
        base.insert(key, value);
        return None;
    }
    let DeValue::Table(entries) = value.into_inner() else {
        unreachable!("checked to be a table")
    };
    match base.get_mut(key.get_ref().as_ref())?.get_mut() {
        DeValue::Table(t) => Some((t, entries)),
        _ => None,
    }
}
