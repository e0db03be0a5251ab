//! The one way names and values reach SQL text.
//!
//! pgferry builds statements about objects it does not control: schemas, tables,
//! columns, constraints, triggers, sequences and roles whose names can hold double
//! quotes, dots, spaces, upper case, reserved words or any Unicode character
//! (see [Identifiers and Key Words](https://www.postgresql.org/docs/current/sql-syntax-lexical.html#SQL-SYNTAX-IDENTIFIERS)).
//! A name spliced in with `format!` is an injection waiting for a hostile table name,
//! so the rule is: SQL text is assembled only through [`Sql`], whose raw pieces must be
//! `&'static str` (written by us, in the source code), and whose dynamic pieces go
//! through [`Ident`], [`QualifiedName`] or a literal, each quoted exactly as
//! PostgreSQL's own `quote_ident` and `quote_literal` do.
//!
//! Definitions that the server itself renders (`pg_get_constraintdef`,
//! `pg_get_triggerdef`, `pg_get_indexdef`) are valid SQL produced by PostgreSQL; they
//! enter through [`ServerSql`], whose name says where they came from.

use std::fmt;

/// The longest identifier PostgreSQL keeps (NAMEDATALEN - 1 bytes); longer ones are
/// silently truncated by the server.
pub const MAX_IDENT_BYTES: usize = 63;

/// An SQL identifier: a schema, table, column, constraint, trigger, sequence or role
/// name, stored unquoted and always rendered quoted.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Ident(String);

/// Why a string cannot be an identifier.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentError {
    #[error("an SQL identifier cannot be empty")]
    Empty,
    #[error("an SQL identifier cannot contain a NUL character")]
    Nul,
}

impl Ident {
    /// Accepts any name PostgreSQL accepts as a quoted identifier.
    pub fn new(name: impl Into<String>) -> Result<Self, IdentError> {
        let name = name.into();
        if name.is_empty() {
            return Err(IdentError::Empty);
        }
        if name.contains('\0') {
            return Err(IdentError::Nul);
        }
        Ok(Ident(name))
    }

    /// A name as read back from the catalog, which cannot be empty or hold NUL.
    ///
    /// # Panics
    /// Panics when given an invalid name: that is a bug in the caller, not bad input.
    pub fn from_catalog(name: impl Into<String>) -> Self {
        Ident::new(name).expect("catalog names are valid identifiers")
    }

    /// The name as stored in the catalog, unquoted.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the server keeps the name whole (longer names are truncated).
    pub fn fits_namedatalen(&self) -> bool {
        self.0.len() <= MAX_IDENT_BYTES
    }

    /// The quoted form: always in double quotes, inner double quotes doubled.
    pub fn quoted(&self) -> String {
        let mut out = String::with_capacity(self.0.len() + 2);
        push_quoted_ident(&mut out, &self.0);
        out
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.quoted())
    }
}

impl fmt::Debug for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ident({})", self.quoted())
    }
}

/// A schema-qualified object name such as a table or sequence.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct QualifiedName {
    pub schema: Ident,
    pub name: Ident,
}

impl QualifiedName {
    pub fn new(schema: Ident, name: Ident) -> Self {
        QualifiedName { schema, name }
    }

    /// A name as read back from the catalog.
    pub fn from_catalog(schema: impl Into<String>, name: impl Into<String>) -> Self {
        QualifiedName::new(Ident::from_catalog(schema), Ident::from_catalog(name))
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

impl fmt::Debug for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QualifiedName({self})")
    }
}

/// SQL text rendered by the server from the catalog (`pg_get_constraintdef` and
/// friends): trusted because PostgreSQL produced it for exactly this purpose.
#[derive(Clone, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct ServerSql(String);

impl ServerSql {
    /// Wraps a definition read from a catalog function's result.
    pub fn from_catalog(text: impl Into<String>) -> Self {
        ServerSql(text.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An SQL statement under construction. Raw text must be `'static` (ours);
/// everything else is quoted on the way in.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Sql(String);

impl Sql {
    pub fn new(text: &'static str) -> Self {
        Sql(text.to_owned())
    }

    /// Appends SQL text written in pgferry's source code.
    pub fn push(mut self, text: &'static str) -> Self {
        self.0.push_str(text);
        self
    }

    /// Appends a quoted identifier.
    pub fn ident(mut self, ident: &Ident) -> Self {
        push_quoted_ident(&mut self.0, ident.as_str());
        self
    }

    /// Appends a quoted, schema-qualified name.
    pub fn name(mut self, name: &QualifiedName) -> Self {
        push_quoted_ident(&mut self.0, name.schema.as_str());
        self.0.push('.');
        push_quoted_ident(&mut self.0, name.name.as_str());
        self
    }

    /// Appends identifiers separated by `, `.
    pub fn ident_list<'a>(mut self, idents: impl IntoIterator<Item = &'a Ident>) -> Self {
        for (i, ident) in idents.into_iter().enumerate() {
            if i > 0 {
                self.0.push_str(", ");
            }
            push_quoted_ident(&mut self.0, ident.as_str());
        }
        self
    }

    /// Appends a string literal, quoted as `quote_literal` does.
    pub fn literal(mut self, value: &str) -> Self {
        push_quoted_literal(&mut self.0, value);
        self
    }

    /// Appends an integer.
    pub fn int(mut self, value: i64) -> Self {
        self.0.push_str(&value.to_string());
        self
    }

    /// Appends a boolean literal.
    pub fn bool(self, value: bool) -> Self {
        self.push(if value { "true" } else { "false" })
    }

    /// Appends a definition rendered by the server.
    pub fn server_sql(mut self, text: &ServerSql) -> Self {
        self.0.push_str(text.as_str());
        self
    }

    /// Appends another statement fragment.
    pub fn append(mut self, other: Sql) -> Self {
        self.0.push_str(&other.0);
        self
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Sql {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Sql {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sql({:?})", self.0)
    }
}

fn push_quoted_ident(out: &mut String, name: &str) {
    out.push('"');
    for c in name.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
}

/// Like libpq's `PQescapeLiteral`: an `E''` string when backslashes are present, so
/// the result means the same whatever `standard_conforming_strings` says.
fn push_quoted_literal(out: &mut String, value: &str) {
    if value.contains('\\') {
        out.push_str(" E");
    }
    out.push('\'');
    for c in value.chars() {
        if c == '\'' || c == '\\' {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names that break naive quoting.
    pub(crate) const HOSTILE: &[&str] = &[
        "plain",
        "UpperCase",
        "with space",
        "dot.in.name",
        "quote\"inside",
        "\"\"",
        "select",
        "user",
        "ünïcødé_表",
        "semi;colon--comment",
        "back\\slash",
        "'single'",
    ];

    #[test]
    fn identifiers_are_always_quoted_and_inner_quotes_doubled() {
        assert_eq!(Ident::new("plain").unwrap().quoted(), "\"plain\"");
        assert_eq!(Ident::new("a\"b").unwrap().quoted(), "\"a\"\"b\"");
        assert_eq!(Ident::new("\"\"").unwrap().quoted(), "\"\"\"\"\"\"");
        assert_eq!(Ident::new("select").unwrap().quoted(), "\"select\"");
        assert_eq!(Ident::new("UpperCase").unwrap().quoted(), "\"UpperCase\"");
        assert_eq!(Ident::new("dot.x").unwrap().quoted(), "\"dot.x\"");
    }

    #[test]
    fn quoted_identifiers_round_trip_through_a_parser_of_the_quoted_form() {
        for name in HOSTILE {
            let quoted = Ident::new(*name).unwrap().quoted();
            assert_eq!(unquote_ident(&quoted), *name, "{quoted}");
        }
    }

    #[test]
    fn empty_and_nul_names_are_refused() {
        assert_eq!(Ident::new(""), Err(IdentError::Empty));
        assert_eq!(Ident::new("a\0b"), Err(IdentError::Nul));
    }

    #[test]
    fn long_names_are_quoted_whole_and_flagged() {
        let long = "x".repeat(100);
        let ident = Ident::new(long.clone()).unwrap();
        assert!(!ident.fits_namedatalen());
        assert_eq!(ident.quoted().len(), 102);
        assert!(Ident::new("y".repeat(63)).unwrap().fits_namedatalen());
        // 21 three-byte characters are 63 bytes.
        assert!(Ident::new("表".repeat(21)).unwrap().fits_namedatalen());
        assert!(!Ident::new("表".repeat(22)).unwrap().fits_namedatalen());
    }

    #[test]
    fn qualified_names_quote_each_part() {
        let name = QualifiedName::new(Ident::new("my.schema").unwrap(), Ident::new("t\"x").unwrap());
        assert_eq!(name.to_string(), "\"my.schema\".\"t\"\"x\"");
        let sql = Sql::new("TRUNCATE ").name(&name);
        assert_eq!(sql.as_str(), "TRUNCATE \"my.schema\".\"t\"\"x\"");
    }

    #[test]
    fn literals_double_quotes_and_use_e_strings_for_backslashes() {
        let sql = Sql::new("SELECT ").literal("it's");
        assert_eq!(sql.as_str(), "SELECT 'it''s'");
        let sql = Sql::new("SELECT ").literal("a\\b'c");
        assert_eq!(sql.as_str(), "SELECT  E'a\\\\b''c'");
    }

    #[test]
    fn builder_joins_identifier_lists() {
        let cols = ["a", "B c", "d\"e"].map(|c| Ident::new(c).unwrap());
        let sql = Sql::new("(").ident_list(cols.iter()).push(")");
        assert_eq!(sql.as_str(), "(\"a\", \"B c\", \"d\"\"e\")");
    }

    /// A reference parser for the quoted form, as the server's scanner reads it.
    fn unquote_ident(quoted: &str) -> String {
        let inner = &quoted[1..quoted.len() - 1];
        assert!(quoted.starts_with('"') && quoted.ends_with('"'));
        let mut out = String::new();
        let mut chars = inner.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' {
                assert_eq!(chars.next(), Some('"'), "lone quote inside {quoted}");
            }
            out.push(c);
        }
        out
    }
}
