//! [`Extensions`]: values of any type, one per type, that core carries for capabilities without
//! knowing them: a function's settings from the manifest (store bindings, config values) and the
//! per-function contexts their imports read while it runs.

use std::any::{Any, TypeId};
use std::sync::Arc;

/// A small map from type to one shared value of that type.
///
/// Lookups scan a short vector (a function has a handful of capabilities), which is cheaper
/// than hashing at these sizes. Values are shared: cloning the map clones `Arc`s.
#[derive(Clone, Default)]
pub struct Extensions {
    entries: Vec<Entry>,
}

#[derive(Clone)]
struct Entry {
    id: TypeId,
    name: &'static str,
    value: Arc<dyn Any + Send + Sync>,
}

impl Extensions {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set the value of type `T`, replacing any previous one.
    pub fn insert<T: Any + Send + Sync>(&mut self, value: T) {
        self.insert_arc(Arc::new(value), std::any::type_name::<T>());
    }

    /// [`Extensions::insert`], builder style.
    pub fn with<T: Any + Send + Sync>(mut self, value: T) -> Self {
        self.insert(value);
        self
    }

    /// Set an already shared value; its concrete type is the key.
    pub fn insert_arc(&mut self, value: Arc<dyn Any + Send + Sync>, name: &'static str) {
        // `(*value).type_id()`: the id of the value inside, not of the `Arc`.
        let id = (*value).type_id();
        match self.entries.iter_mut().find(|e| e.id == id) {
            Some(e) => e.value = value,
            None => self.entries.push(Entry { id, name, value }),
        }
    }

    /// The value of type `T`, if one is set.
    pub fn get<T: Any>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        self.entries
            .iter()
            .find(|e| e.id == id)
            .and_then(|e| e.value.downcast_ref())
    }

    /// The shared value of type `T`, if one is set.
    pub fn get_arc<T: Any + Send + Sync>(&self) -> Option<Arc<T>> {
        let id = TypeId::of::<T>();
        let e = self.entries.iter().find(|e| e.id == id)?;
        e.value.clone().downcast().ok()
    }

    /// The value of type `T` to change, if one is set and not shared (while a manifest is
    /// being parsed, nothing else holds its sections).
    pub fn get_mut<T: Any>(&mut self) -> Option<&mut T> {
        let id = TypeId::of::<T>();
        let e = self.entries.iter_mut().find(|e| e.id == id)?;
        Arc::get_mut(&mut e.value)?.downcast_mut()
    }

    /// The value of type `T` to change, set to `T::default()` first when there is none (or
    /// when the one there is shared, which a manifest being parsed never is).
    pub fn get_or_default<T: Any + Send + Sync + Default>(&mut self) -> &mut T {
        if self.get_mut::<T>().is_none() {
            self.insert(T::default());
        }
        self.get_mut().expect("a value of this type was just set")
    }

    /// Whether no value is set.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl std::fmt::Debug for Extensions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| e.name))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_per_type() {
        #[derive(Debug, PartialEq)]
        struct Names(Vec<&'static str>);
        let mut x = Extensions::new().with(Names(vec!["a"])).with(7u32);
        assert_eq!(x.get::<Names>(), Some(&Names(vec!["a"])));
        x.insert(Names(vec!["b"]));
        assert_eq!(x.get::<Names>(), Some(&Names(vec!["b"])));
        assert_eq!(x.get::<u32>(), Some(&7));
        assert!(x.get::<u64>().is_none());
        let shared: Arc<dyn Any + Send + Sync> = Arc::new(3u64);
        x.insert_arc(shared, "u64");
        assert_eq!(x.get_arc::<u64>().as_deref(), Some(&3));
    }
}
