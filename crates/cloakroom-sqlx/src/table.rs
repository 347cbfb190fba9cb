//! Table names: validated before they reach SQL, then quoted the way the dialect quotes.

use crate::SetupError;

/// The default table name.
pub const DEFAULT_TABLE: &str = "cloakroom_sessions";

/// Checks a table (or schema) name: 1 to 63 ASCII letters, digits or underscores, not
/// starting with a digit. Quoting then makes reserved words such as `user` usable.
pub fn validate_identifier(name: &str) -> Result<(), SetupError> {
    let mut chars = name.chars();
    let ok = matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 63;
    if ok {
        Ok(())
    } else {
        Err(SetupError::InvalidIdentifier(name.to_owned()))
    }
}

/// A validated table name, and how the dialect writes it in SQL.
#[derive(Clone, Debug)]
pub struct TableName {
    /// The name as given, `schema.table` when qualified: a key for locks.
    pub plain: String,
    /// The unqualified table name, as given.
    pub unqualified: String,
    /// The schema or database, if one was named.
    pub schema: Option<String>,
    /// The quoted, possibly qualified name to splice into SQL.
    pub sql: String,
    /// A prefix for index names, unique per table (`schema_table`), quoted by the caller.
    pub index_prefix: String,
}

impl TableName {
    /// Validates `table` (and `schema`) and quotes them with `quote`: validation comes
    /// first, so a bad name never reaches the database.
    pub fn new(
        schema: Option<&str>,
        table: &str,
        quote: fn(&str) -> String,
    ) -> Result<Self, SetupError> {
        validate_identifier(table)?;
        if let Some(schema) = schema {
            validate_identifier(schema)?;
        }
        let (plain, sql, index_prefix) = match schema {
            Some(schema) => (
                format!("{schema}.{table}"),
                format!("{}.{}", quote(schema), quote(table)),
                format!("{schema}_{table}"),
            ),
            None => (table.to_owned(), quote(table), table.to_owned()),
        };
        Ok(Self {
            plain,
            unqualified: table.to_owned(),
            schema: schema.map(str::to_owned),
            sql,
            index_prefix,
        })
    }

    /// The default table, quoted with `quote`.
    pub fn default_with(quote: fn(&str) -> String) -> Self {
        Self {
            plain: DEFAULT_TABLE.to_owned(),
            unqualified: DEFAULT_TABLE.to_owned(),
            schema: None,
            sql: quote(DEFAULT_TABLE),
            index_prefix: DEFAULT_TABLE.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_validated() {
        assert!(validate_identifier("cloakroom_sessions").is_ok());
        assert!(validate_identifier("_t1").is_ok());
        for bad in [
            "",
            "1abc",
            "a-b",
            "a b",
            "x;drop table y",
            "t\"",
            "t`",
            &"a".repeat(64),
        ] {
            assert!(validate_identifier(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names_are_validated_then_quoted_and_qualified() {
        let quote = |name: &str| format!("[{name}]");
        let name = TableName::new(Some("App"), "User", quote).unwrap();
        assert_eq!(name.sql, "[App].[User]");
        assert_eq!(name.plain, "App.User");
        assert_eq!(name.index_prefix, "App_User");
        assert!(TableName::new(Some("bad schema"), "t", quote).is_err());
        assert!(TableName::new(None, "t;", quote).is_err());
    }
}
