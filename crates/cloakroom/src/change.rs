//! The change set: a request's writes, kept so they can be re-applied to a fresher record
//! when a compare-and-set loses to a concurrent writer.

use std::sync::Arc;

use serde_json::Value;

use crate::config::Limits;
use crate::error::{SessionError, MAX_VALUE_DEPTH};
use crate::record::{json_len, ClientMeta, Data, Record};

/// A re-runnable read-modify-write of one value.
pub(crate) type UpdateFn = Arc<dyn Fn(Option<&Value>) -> Result<Value, SessionError> + Send + Sync>;

/// One write.
#[derive(Clone)]
pub(crate) enum Change {
    Insert(String, Value),
    Remove(String),
    Clear,
    Update(String, UpdateFn),
    Set(Field),
}

/// A field of the record outside the data map, with a value for it: what a write sets, or
/// what it replaced. One type for both, so that setting a field and taking the write back
/// are the same swap.
#[derive(Clone)]
pub(crate) enum Field {
    User(Option<String>),
    Persistent(bool),
    Client(ClientMeta),
    Epoch(Option<String>),
    /// The device binding (DBSC): offered at login, dropped with the old one.
    #[cfg(feature = "dbsc")]
    DeviceBinding(Option<Box<Value>>),
}

impl Field {
    /// Puts this value in its field of `record`; returns the value it replaced.
    fn replace(self, record: &mut Record) -> Field {
        use std::mem::replace;
        match self {
            Field::User(user) => Field::User(replace(&mut record.user_id, user)),
            Field::Persistent(persistent) => {
                Field::Persistent(replace(&mut record.persistent, persistent))
            }
            Field::Client(client) => Field::Client(replace(&mut record.client, client)),
            Field::Epoch(epoch) => Field::Epoch(replace(&mut record.auth_epoch, epoch)),
            #[cfg(feature = "dbsc")]
            Field::DeviceBinding(binding) => {
                Field::DeviceBinding(replace(&mut record.device_binding, binding))
            }
        }
    }
}

impl Change {
    /// Applies this write to `record`.
    pub(crate) fn apply(&self, record: &mut Record) -> Result<(), SessionError> {
        match self {
            Change::Insert(key, value) => {
                replace_value(&mut record.data, key, value.clone());
            }
            Change::Remove(key) => {
                record.data.remove(key);
            }
            Change::Clear => record.data.clear(),
            Change::Update(key, f) => {
                let value = f(record.data.get(key))?;
                replace_value(&mut record.data, key, value);
            }
            Change::Set(field) => {
                field.clone().replace(record);
            }
        }
        Ok(())
    }

    /// Applies this write to `record` and returns how to take it back: client-side, a write
    /// is tried on the record itself and taken back if its cookie would not fit, which is
    /// cheaper than trying it on a clone of the whole record.
    pub(crate) fn apply_undoable(&self, record: &mut Record) -> Result<Undo, SessionError> {
        Ok(match self {
            Change::Insert(key, value) => Undo::Value(
                key.clone(),
                replace_value(&mut record.data, key, value.clone()),
            ),
            Change::Update(key, f) => {
                let value = f(record.data.get(key))?;
                Undo::Value(key.clone(), replace_value(&mut record.data, key, value))
            }
            Change::Remove(key) => Undo::Value(key.clone(), record.data.remove(key)),
            Change::Clear => Undo::Data(std::mem::take(&mut record.data)),
            Change::Set(field) => Undo::Field(field.clone().replace(record)),
        })
    }

    /// Applies this write to `record` if it keeps within `limits`, noting in `undo` how to
    /// take it back. `total` is the data's size, computed when first needed.
    fn apply_within(
        &self,
        record: &mut Record,
        limits: &Limits,
        total: &mut Option<usize>,
        undo: &mut Vec<Undo>,
    ) -> Result<(), SessionError> {
        let mut set = |record: &mut Record, total: &mut Option<usize>, key: &str, value: Value| {
            let before = *total.get_or_insert_with(|| data_size(&record.data));
            let after = check_write(limits, key, record.data.get(key), Some(&value), before)?;
            *total = Some(after);
            let old = replace_value(&mut record.data, key, value);
            undo.push(Undo::Value(key.to_owned(), old));
            Ok(())
        };
        match self {
            Change::Insert(key, value) => return set(record, total, key, value.clone()),
            Change::Update(key, f) => {
                let value = f(record.data.get(key))?;
                return set(record, total, key, value);
            }
            Change::Remove(key) => {
                if let Some(old) = record.data.remove(key) {
                    if let Some(total) = total {
                        *total = total.saturating_sub(entry_size(key, &old));
                    }
                    undo.push(Undo::Value(key.clone(), Some(old)));
                }
            }
            Change::Clear => {
                undo.push(Undo::Data(std::mem::take(&mut record.data)));
                *total = Some(0);
            }
            Change::Set(field) => undo.push(Undo::Field(field.clone().replace(record))),
        }
        Ok(())
    }
}

/// Sets `key` to `value` in `data` and returns the value it replaces. The key is copied
/// only when it is new: most writes overwrite a key the session already has.
pub(crate) fn replace_value(data: &mut Data, key: &str, value: Value) -> Option<Value> {
    match data.get_mut(key) {
        Some(slot) => Some(std::mem::replace(slot, value)),
        None => data.insert(key.to_owned(), value),
    }
}

/// What a write replaced, to put back if a later write of its change set fails (or,
/// client-side, if its cookie would not fit).
pub(crate) enum Undo {
    Value(String, Option<Value>),
    Data(Data),
    Field(Field),
}

impl Undo {
    /// Puts back what the write replaced.
    pub(crate) fn revert(self, record: &mut Record) {
        match self {
            Undo::Value(key, Some(old)) => {
                record.data.insert(key, old);
            }
            Undo::Value(key, None) => {
                record.data.remove(&key);
            }
            Undo::Data(data) => record.data = data,
            Undo::Field(field) => {
                field.replace(record);
            }
        }
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
    #[cfg(test)]
    pub(crate) fn apply_all(&self, record: &mut Record) -> Result<(), SessionError> {
        self.0.iter().try_for_each(|change| change.apply(record))
    }

    /// Re-applies every write, in order, to a fresher `record` than they were made on (a
    /// merge), each checked against `limits` as the write itself was: a merged record
    /// keeps within them too. All or nothing: on failure `record` is left as it was.
    /// `total` caches the data's size across the change sets merged into one record.
    pub(crate) fn apply_within(
        &self,
        record: &mut Record,
        limits: &Limits,
        total: &mut Option<usize>,
    ) -> Result<(), SessionError> {
        let total_before = *total;
        let mut undo = Vec::new();
        let applied = self
            .0
            .iter()
            .try_for_each(|change| change.apply_within(record, limits, total, &mut undo));
        if applied.is_err() {
            for step in undo.into_iter().rev() {
                step.revert(record);
            }
            *total = total_before;
        }
        applied
    }
}

/// The size of one entry of the data map as the limits count it: its key, its value as
/// JSON, and four bytes of quotes, colon and comma.
pub(crate) fn entry_size(key: &str, value: &Value) -> usize {
    key.len() + value_size(value) + 4
}

/// The size of `value` as JSON.
pub(crate) fn value_size(value: &Value) -> usize {
    // Writing a `Value` to a counter cannot fail.
    json_len(value).unwrap_or(0)
}

/// The size of the whole data map as the limits count it.
pub(crate) fn data_size(data: &Data) -> usize {
    data.iter().map(|(key, value)| entry_size(key, value)).sum()
}

/// Whether `value` nests arrays and objects more than `limit` deep. The recursion stops
/// at `limit` levels, so a value too deep for the stores' decoders cannot overflow this
/// check's stack either, and it allocates nothing.
fn nests_deeper_than(value: &Value, limit: usize) -> bool {
    let deeper = |child: &Value| nests_deeper_than(child, limit - 1);
    match value {
        Value::Array(items) => limit == 0 || items.iter().any(deeper),
        Value::Object(entries) => limit == 0 || entries.values().any(deeper),
        _ => false,
    }
}

/// Checks setting `key` from `old` to `new` (`None`: removing it) in data of `total` bytes
/// against `limits`, and returns the new total.
///
/// A write that grows neither the value nor the session is always allowed, so a session
/// over limits that were lowered after it was written can still shrink. A value nested
/// deeper than [`MAX_VALUE_DEPTH`] is always refused: no store could load it back.
pub(crate) fn check_write(
    limits: &Limits,
    key: &str,
    old: Option<&Value>,
    new: Option<&Value>,
    total: usize,
) -> Result<usize, SessionError> {
    let old_size = old.map(value_size);
    let old_entry = old_size.map_or(0, |size| key.len() + size + 4);
    let new_entry = match new {
        None => 0,
        Some(value) => {
            if nests_deeper_than(value, MAX_VALUE_DEPTH) {
                return Err(SessionError::ValueTooDeep {
                    key: key.to_owned(),
                    limit: MAX_VALUE_DEPTH,
                });
            }
            let size = value_size(value);
            if size > limits.max_value_bytes && old_size.is_none_or(|old| size > old) {
                return Err(SessionError::ValueTooLarge {
                    key: key.to_owned(),
                    size,
                    limit: limits.max_value_bytes,
                });
            }
            key.len() + size + 4
        }
    };
    let size = total.saturating_sub(old_entry) + new_entry;
    if size > limits.max_session_bytes && size > total {
        return Err(SessionError::SessionTooLarge {
            size,
            limit: limits.max_session_bytes,
        });
    }
    Ok(size)
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
        let limits = Limits::default();
        assert!(changes
            .apply_within(&mut record, &limits, &mut None)
            .is_err());
        assert_eq!(
            record, before,
            "the insert before the failing update is undone"
        );

        let mut inserts = ChangeSet::default();
        inserts.push(Change::Insert("mine".into(), json!(1)));
        inserts
            .apply_within(&mut record, &limits, &mut None)
            .unwrap();
        assert_eq!(record.data.get("mine"), Some(&json!(1)));
    }

    #[test]
    fn depth_counts_arrays_and_objects_on_the_deepest_path() {
        let nested = |depth: usize| {
            (0..depth).fold(json!(1), |inner, level| {
                if level % 2 == 0 {
                    json!([inner])
                } else {
                    json!({ "k": inner })
                }
            })
        };
        assert!(!nests_deeper_than(&json!("scalar"), 0));
        assert!(!nests_deeper_than(
            &nested(MAX_VALUE_DEPTH),
            MAX_VALUE_DEPTH
        ));
        assert!(nests_deeper_than(
            &nested(MAX_VALUE_DEPTH + 1),
            MAX_VALUE_DEPTH
        ));
        let wide = json!({ "a": [1, 2, {"b": [3]}], "c": nested(MAX_VALUE_DEPTH - 1) });
        assert!(!nests_deeper_than(&wide, MAX_VALUE_DEPTH));
        let wide = json!({ "a": [1, 2, {"b": [3]}], "c": nested(MAX_VALUE_DEPTH) });
        assert!(nests_deeper_than(&wide, MAX_VALUE_DEPTH));
        let limits = Limits::default();
        let refused = check_write(&limits, "k", None, Some(&nested(200)), 0);
        assert!(matches!(refused, Err(SessionError::ValueTooDeep { .. })));
    }
}
