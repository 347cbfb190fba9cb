//! `Debug` for types that must not print all they hold.

/// Implements `Debug` for `$ty` showing only the named fields, then `..` for the rest.
///
/// For types whose other fields are secrets (a cookie value, a key) or internals not worth
/// printing (a store behind an `Arc`): naming what is shown, rather than what is hidden,
/// means a field added later stays out of logs until someone decides it is safe.
///
/// `debug_showing!(SessionManager { config })` prints the config's own `Debug`, then `..`:
/// `SessionManager { config: SessionConfig { … }, .. }`.
macro_rules! debug_showing {
    ($ty:ident { $($field:ident),* $(,)? }) => {
        impl ::std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.debug_struct(stringify!($ty))
                    $(.field(stringify!($field), &self.$field))*
                    .finish_non_exhaustive()
            }
        }
    };
}
pub(crate) use debug_showing;

#[cfg(test)]
mod tests {
    // `debug_showing!` is in scope here: it is defined above, in the parent module.
    struct Login {
        user: &'static str,
        password: &'static str,
    }

    debug_showing!(Login { user });

    #[test]
    fn shows_the_named_fields_and_hides_the_rest() {
        let login = Login {
            user: "alice",
            password: "hunter2",
        };
        assert_eq!(login.password.len(), 7, "the hidden field is really there");
        assert_eq!(format!("{login:?}"), r#"Login { user: "alice", .. }"#);
    }
}
