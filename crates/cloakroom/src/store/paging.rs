//! Paging helpers on [`ListQuery`], for stores that answer `list_sessions` by reading keys
//! one by one, and for tools that walk every page.

use super::{ListQuery, SessionEntry};
use crate::id::StoreKey;

impl ListQuery {
    /// The keys a listing reads, in order: `keys` sorted, without repeats, and only those
    /// after the cursor. A store reads their records in this order until it has
    /// [`limit`](Self::limit) live ones.
    ///
    /// ```
    /// use cloakroom::{ListQuery, SessionId};
    /// let (a, b) = (SessionId::generate().store_key(), SessionId::generate().store_key());
    /// let (low, high) = (a.min(b), a.max(b));
    /// let query = ListQuery { after: Some(low), limit: 10, ..ListQuery::default() };
    /// assert_eq!(query.candidates(vec![high, low, high]), vec![high]);
    /// ```
    pub fn candidates(&self, mut keys: Vec<StoreKey>) -> Vec<StoreKey> {
        keys.sort();
        keys.dedup();
        keys.retain(|key| self.after.is_none_or(|after| *key > after));
        keys
    }

    /// Moves the cursor past `page`, the answer to this query, so the query asks for the
    /// next page; `false` once `page` is empty, when every page has been read.
    ///
    /// ```no_run
    /// # async fn demo(store: &dyn cloakroom::SessionStore) -> Result<(), cloakroom::StoreError> {
    /// let mut query = cloakroom::ListQuery { limit: 1000, ..Default::default() };
    /// loop {
    ///     let page = store.list_sessions(&query).await?;
    ///     if !query.advance(&page) {
    ///         break;
    ///     }
    ///     // ... use the page
    /// }
    /// # Ok(()) }
    /// ```
    pub fn advance(&mut self, page: &[SessionEntry]) -> bool {
        match page.last() {
            Some(last) => {
                self.after = Some(last.key);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::SessionId;
    use crate::record::{now, Record};

    fn keys(n: usize) -> Vec<StoreKey> {
        let mut keys: Vec<_> = (0..n).map(|_| SessionId::generate().store_key()).collect();
        keys.sort();
        keys
    }

    #[test]
    fn candidates_are_sorted_unique_and_after_the_cursor() {
        let k = keys(4);
        let all = ListQuery::default();
        assert_eq!(
            all.candidates(vec![k[2], k[0], k[2], k[1]]),
            vec![k[0], k[1], k[2]]
        );
        let after = ListQuery {
            after: Some(k[1]),
            ..ListQuery::default()
        };
        assert_eq!(
            after.candidates(vec![k[3], k[1], k[0], k[2]]),
            vec![k[2], k[3]]
        );
    }

    #[test]
    fn advance_moves_past_the_page_and_stops_on_an_empty_one() {
        let k = keys(2);
        let page: Vec<_> = k
            .iter()
            .map(|key| SessionEntry {
                key: *key,
                record: Record::new(now(), None, None),
            })
            .collect();
        let mut query = ListQuery::default();
        assert!(query.advance(&page));
        assert_eq!(query.after, Some(k[1]));
        assert!(!query.advance(&[]));
        assert_eq!(query.after, Some(k[1]), "an empty page leaves the cursor");
    }
}
