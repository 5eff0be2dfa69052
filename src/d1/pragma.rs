//! D1's PRAGMA allow-list (workerd's), a fact of the platform kept in one place: the simulator's
//! authorizer enforces it and lint flags a migration that would meet it.

/// How a PRAGMA of the allow-list may be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PragmaArgument {
    /// Read only: no argument.
    None,
    /// A boolean, or no argument to read it.
    Boolean,
    /// The name of a table or index (required).
    ObjectName,
    /// The name of a table or index, or nothing.
    OptionalObjectName,
    /// An integer, or nothing.
    OptionalNumber,
    /// An integer, an object name, or nothing.
    OptionalNumberOrObjectName,
    /// Anything: `table_list`.
    Any,
}

/// PRAGMAs D1 allows, lower-cased, each with how it may be called.
pub const ALLOWED_PRAGMAS: &[(&str, PragmaArgument)] = &[
    ("data_version", PragmaArgument::None),
    ("page_size", PragmaArgument::None),
    ("case_sensitive_like", PragmaArgument::Boolean),
    ("foreign_keys", PragmaArgument::Boolean),
    ("defer_foreign_keys", PragmaArgument::Boolean),
    ("ignore_check_constraints", PragmaArgument::Boolean),
    ("legacy_alter_table", PragmaArgument::Boolean),
    ("recursive_triggers", PragmaArgument::Boolean),
    ("reverse_unordered_selects", PragmaArgument::Boolean),
    ("foreign_key_list", PragmaArgument::ObjectName),
    ("index_info", PragmaArgument::ObjectName),
    ("index_list", PragmaArgument::ObjectName),
    ("index_xinfo", PragmaArgument::ObjectName),
    ("foreign_key_check", PragmaArgument::OptionalObjectName),
    ("quick_check", PragmaArgument::OptionalNumberOrObjectName),
    ("optimize", PragmaArgument::OptionalNumber),
    ("table_list", PragmaArgument::Any),
    ("table_info", PragmaArgument::ObjectName),
    ("table_xinfo", PragmaArgument::ObjectName),
];

/// How `pragma` (in any letter case) may be called; `None` when D1 refuses it.
pub fn allowed_pragma(pragma: &str) -> Option<PragmaArgument> {
    ALLOWED_PRAGMAS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(pragma))
        .map(|(_, argument)| *argument)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lower_case_and_listed_once() {
        for (index, (name, _)) in ALLOWED_PRAGMAS.iter().enumerate() {
            assert_eq!(*name, name.to_ascii_lowercase());
            assert!(
                ALLOWED_PRAGMAS[index + 1..]
                    .iter()
                    .all(|(other, _)| other != name),
                "{name} is listed twice"
            );
        }
        assert_eq!(
            allowed_pragma("Foreign_Keys"),
            Some(PragmaArgument::Boolean)
        );
        assert_eq!(allowed_pragma("writable_schema"), None);
    }
}
