//! `[env.NAME]` overlays: an environment's tables laid over the base manifest.
//!
//! `[defaults]` and `[functions.NAME]` merge key by key (`config` and `secrets` entry by
//! entry), so an environment states only what differs. Every other named table (`[kv.NAME]`,
//! `[queues.NAME]`, ...) replaces the base table of the same name whole: a store moving from
//! SQLite to PostgreSQL shares no settings with its embedded self.

use super::{RawFunction, RawManifest, RawSettings};

/// Replace each `base.field` by `over.field` when the overlay sets it.
macro_rules! take_set {
    ($base:expr, $over:expr; $($field:ident),* $(,)?) => {
        $( if $over.$field.is_some() { $base.$field = $over.$field; } )*
    };
}

/// Lay `over` (an `[env.NAME]` table) over `base`.
pub(super) fn overlay(base: &mut RawManifest, over: RawManifest) {
    settings(&mut base.defaults, over.defaults);
    for (name, f) in over.functions {
        match base.functions.get_mut(&name) {
            Some(b) => function(b, f),
            None => {
                base.functions.insert(name, f);
            }
        }
    }
    base.queues.extend(over.queues);
    base.schedules.extend(over.schedules);
    base.streams.extend(over.streams);
    base.workflows.extend(over.workflows);
    base.topics.extend(over.topics);
    base.rules.extend(over.rules);
    base.kv.extend(over.kv);
    base.sql.extend(over.sql);
    base.blob.extend(over.blob);
    if over.workflow_store.is_some() {
        base.workflow_store = over.workflow_store;
    }
    if over.queue_backend.is_some() {
        base.queue_backend = over.queue_backend;
    }
}

fn settings(base: &mut RawSettings, over: RawSettings) {
    take_set!(base, over; memory, timeout, concurrency, instances, max_uses, idle_timeout, prewarm);
}

fn function(base: &mut RawFunction, over: RawFunction) {
    take_set!(base, over;
        component, world, routes, memory, timeout, concurrency, instances, max_uses,
        idle_timeout, prewarm, kv, sql, blob, allowed_outbound_hosts);
    base.config.extend(over.config);
    base.secrets.extend(over.secrets);
}
