//! [`Services`]: the late-bound services of one app.
//!
//! A capability's imports often need something a higher layer builds later: the queue-publishing
//! import needs the app's queues, store change records need the stream feed. The capability asks
//! for a [`Slot`] of a trait it defines (`services.slot::<dyn QueueSender>()`) when the app is
//! configured; whoever implements that trait fills it once it exists
//! (`services.provide::<dyn QueueSender>(queues)`). Neither knows the other.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// A shared, fill-once reference to a service of type `T` (usually a `dyn Trait`).
pub struct Slot<T: ?Sized>(Arc<OnceLock<Arc<T>>>);

impl<T: ?Sized> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<T: ?Sized> Default for Slot<T> {
    fn default() -> Self {
        Self(Arc::new(OnceLock::new()))
    }
}

impl<T: ?Sized> Slot<T> {
    /// The service, once provided.
    pub fn get(&self) -> Option<&Arc<T>> {
        self.0.get()
    }

    /// Provide the service; a slot is filled once, later values are ignored.
    pub fn set(&self, value: Arc<T>) {
        let _ = self.0.set(value);
    }
}

impl<T: ?Sized> std::fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Slot(provided)"
        } else {
            "Slot(empty)"
        })
    }
}

/// The slots of one app, by service type.
#[derive(Default)]
pub struct Services {
    slots: Mutex<HashMap<TypeId, Box<dyn Any + Send + Sync>>>,
}

impl Services {
    /// The slot for service type `T`, created empty on first use.
    pub fn slot<T: ?Sized + Send + Sync + 'static>(&self) -> Slot<T> {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots
            .entry(TypeId::of::<T>())
            .or_insert_with(|| Box::new(Slot::<T>::default()))
            .downcast_ref::<Slot<T>>()
            .expect("slots are keyed by their type")
            .clone()
    }

    /// Fill the slot for `T`.
    pub fn provide<T: ?Sized + Send + Sync + 'static>(&self, value: Arc<T>) {
        self.slot::<T>().set(value);
    }

    /// The service of type `T`, if provided.
    pub fn get<T: ?Sized + Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.slot::<T>().get().cloned()
    }
}

impl std::fmt::Debug for Services {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.slots.lock().map(|s| s.len()).unwrap_or(0);
        write!(f, "Services({n} slots)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    trait Greeter: Send + Sync {
        fn hi(&self) -> &'static str;
    }
    struct En;
    impl Greeter for En {
        fn hi(&self) -> &'static str {
            "hi"
        }
    }

    #[test]
    fn a_slot_taken_early_sees_the_service_provided_later() {
        let services = Services::default();
        let slot = services.slot::<dyn Greeter>();
        assert!(slot.get().is_none());
        services.provide::<dyn Greeter>(Arc::new(En));
        assert_eq!(slot.get().map(|g| g.hi()), Some("hi"));
        assert!(services.get::<dyn Greeter>().is_some());
    }
}
