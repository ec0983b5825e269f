//! Interning: a worker stores each distinct account or GTIN once and refers to it by a
//! `u32`, so per-code state holds 4 bytes instead of a string.

use std::collections::HashMap;

/// Strings by dense id. Ids are worker-local and never leave the worker.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Interner {
    // Only looked up, never iterated: a HashMap cannot reach an output's order.
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    /// The id of `name`, assigning the next one the first time.
    pub fn intern(&mut self, name: &str) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        let id = u32::try_from(self.names.len()).expect("fewer than 2^32 distinct names");
        self.names.push(name.to_string());
        self.ids.insert(name.to_string(), id);
        id
    }

    /// How many names it holds (ids are `0..len`).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether it holds no name.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The name of an id this interner gave out.
    pub fn name(&self, id: u32) -> &str {
        &self.names[id as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_dense_and_stable() {
        let mut interner = Interner::default();
        assert_eq!(interner.intern("KZ-A"), 0);
        assert_eq!(interner.intern("KZ-B"), 1);
        assert_eq!(interner.intern("KZ-A"), 0);
        assert_eq!(interner.name(1), "KZ-B");
    }
}
