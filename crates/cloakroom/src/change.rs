//! The change set: a request's writes, kept so they can be re-applied to a fresher record
//! when a compare-and-set loses to a concurrent writer.

use std::sync::Arc;

use serde_json::Value;

use crate::error::SessionError;
use crate::record::{ClientMeta, Record};

/// A re-runnable read-modify-write of one value.
pub(crate) type UpdateFn = Arc<dyn Fn(Option<&Value>) -> Result<Value, SessionError> + Send + Sync>;

/// One write.
#[derive(Clone)]
pub(crate) enum Change {
    Insert(String, Value),
    Remove(String),
    Clear,
    Update(String, UpdateFn),
    SetUser(Option<String>),
    SetPersistent(bool),
    SetClient(ClientMeta),
    SetEpoch(Option<String>),
}

impl Change {
    /// Applies this write to `record`.
    pub(crate) fn apply(&self, record: &mut Record) -> Result<(), SessionError> {
        match self {
            Change::Insert(key, value) => {
                record.data.insert(key.clone(), value.clone());
            }
            Change::Remove(key) => {
                record.data.remove(key);
            }
            Change::Clear => record.data.clear(),
            Change::Update(key, f) => {
                let value = f(record.data.get(key))?;
                record.data.insert(key.clone(), value);
            }
            Change::SetUser(user) => record.user_id.clone_from(user),
            Change::SetPersistent(persistent) => record.persistent = *persistent,
            Change::SetClient(client) => record.client = client.clone(),
            Change::SetEpoch(epoch) => record.auth_epoch.clone_from(epoch),
        }
        Ok(())
    }
}

/// A request's writes, in order.
#[derive(Clone, Default)]
pub(crate) struct ChangeSet(Vec<Change>);

impl ChangeSet {
    pub(crate) fn push(&mut self, change: Change) {
        self.0.push(change);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn clear(&mut self) {
        self.0.clear();
    }

    /// Re-applies every write, in order, to `record`.
    pub(crate) fn apply_all(&self, record: &mut Record) -> Result<(), SessionError> {
        self.0.iter().try_for_each(|change| change.apply(record))
    }

    /// The same, but on failure `record` is left as it was. Only an `update` can fail, so
    /// a set without one is applied in place; one with one is applied to a copy first.
    pub(crate) fn apply_all_or_nothing(&self, record: &mut Record) -> Result<(), SessionError> {
        if !self
            .0
            .iter()
            .any(|change| matches!(change, Change::Update(..)))
        {
            return self.apply_all(record);
        }
        let mut candidate = record.clone();
        self.apply_all(&mut candidate)?;
        *record = candidate;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reapplying_merges_with_concurrent_writes() {
        let mut changes = ChangeSet::default();
        changes.push(Change::Insert("mine".into(), json!(1)));
        let incr: UpdateFn = Arc::new(|v| Ok(json!(v.and_then(Value::as_u64).unwrap_or(0) + 1)));
        changes.push(Change::Update("n".into(), incr));
        changes.push(Change::Remove("gone".into()));

        let mut fresh = Record::new(crate::record::now(), None, None);
        fresh.data.insert("theirs".into(), json!(true));
        fresh.data.insert("n".into(), json!(41));
        fresh.data.insert("gone".into(), json!(0));
        changes.apply_all(&mut fresh).unwrap();
        assert_eq!(fresh.data.get("theirs"), Some(&json!(true)));
        assert_eq!(fresh.data.get("mine"), Some(&json!(1)));
        assert_eq!(fresh.data.get("n"), Some(&json!(42)));
        assert!(!fresh.data.contains_key("gone"));
    }

    #[test]
    fn all_or_nothing_leaves_the_record_alone_when_an_update_fails() {
        let mut changes = ChangeSet::default();
        changes.push(Change::Insert("mine".into(), json!(1)));
        changes.push(Change::Update(
            "n".into(),
            Arc::new(|_| Err(SessionError::Finished)),
        ));
        let mut record = Record::new(crate::record::now(), None, None);
        record.data.insert("n".into(), json!(41));
        let before = record.clone();
        assert!(changes.apply_all_or_nothing(&mut record).is_err());
        assert_eq!(
            record, before,
            "the insert before the failing update is undone"
        );

        let mut inserts = ChangeSet::default();
        inserts.push(Change::Insert("mine".into(), json!(1)));
        inserts.apply_all_or_nothing(&mut record).unwrap();
        assert_eq!(record.data.get("mine"), Some(&json!(1)));
    }
}
