//! DDL capture's decisions (pure): what a DDL message from the source's event
//! trigger says, and whether and how its command is replayed on the target.
//!
//! The event trigger can only see the text the client sent (`current_query()`):
//! PostgreSQL has no SQL-level deparser of a command. That text is replayed
//! exactly when it is made of DDL statements alone; a text that also holds data
//! changes (whose rows already arrive through the stream and would arrive
//! twice), transaction control, or a call that ran the DDL indirectly (`DO`, a
//! function) is never guessed at: change capture stops at it, naming it, and the
//! operator gives the equivalent DDL (`pgferry follow --apply-ddl`).
//!
//! Statements are split and read by a small lexer that knows PostgreSQL's
//! quoting (strings, `E''` escapes, quoted identifiers, dollar quotes, both
//! comment forms), so a semicolon or keyword inside a literal is never taken for
//! one of the statement's own.

use serde::Deserialize;

/// What the source's event trigger emits (JSON) at `ddl_command_end`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct DdlMessage {
    /// The client's query text (`current_query()`).
    pub query: String,
    /// The session's `search_path` when the command ran.
    pub search_path: String,
    /// The role the command ran as (`SET ROLE`'s, else the session's): the
    /// replay runs as it when pgferry's target role may, so owners match.
    #[serde(default)]
    pub role: Option<String>,
    /// The command's tag (`ALTER TABLE`, `CREATE INDEX`, ...).
    pub tag: String,
    /// The objects the command created or changed (`pg_event_trigger_ddl_commands()`).
    #[serde(default)]
    pub commands: Vec<DdlObject>,
    /// New tables the trigger could not add to the migration's publication.
    #[serde(default)]
    pub unpublished: Vec<String>,
}

/// One object a DDL command touched.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct DdlObject {
    pub tag: String,
    #[serde(rename = "type")]
    pub object_type: String,
    pub identity: Option<String>,
}

/// What to do with a DDL message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Replay {
    /// Run this text on the target, under the source's search_path.
    Run(String),
    /// Nothing to run: the text was already replayed in this source transaction
    /// (one text, several commands).
    AlreadyRun,
    /// Stop change capture: the reason, for the operator.
    Refuse(String),
}

/// First words of the statements replayed as they are.
const DDL_WORDS: [&str; 9] = ["CREATE", "ALTER", "DROP", "COMMENT", "GRANT", "REVOKE", "REFRESH", "SECURITY", "IMPORT"];
/// Session settings: the search_path they may set is in the message already.
const SETTING_WORDS: [&str; 2] = ["SET", "RESET"];

/// Decides how a DDL message is replayed (pure). `replayed` holds the query
/// texts already run for the current source transaction.
pub fn plan_replay(message: &DdlMessage, replayed: &[String]) -> Replay {
    if !message.unpublished.is_empty() {
        return Replay::Refuse(format!(
            "the new table(s) {} could not be added to the migration's publication (pgferry's role on the source does not own them): their rows are not replicated",
            message.unpublished.join(", ")
        ));
    }
    if replayed.contains(&message.query) {
        return Replay::AlreadyRun;
    }
    let mut kept = Vec::new();
    for statement in split_statements(&message.query) {
        let words = leading_words(statement, 2);
        let Some(first) = words.first() else { continue };
        if SETTING_WORDS.contains(&first.as_str()) && !words.iter().any(|w| w == "ROLE" || w == "SESSION") {
            continue;
        }
        if !DDL_WORDS.contains(&first.as_str()) {
            return Replay::Refuse(format!(
                "the command {} ran inside a {first} statement, which pgferry does not replay (its data changes arrive through the stream, and the DDL it ran cannot be read back)",
                message.tag
            ));
        }
        kept.push(without_concurrently(statement));
    }
    if kept.is_empty() {
        return Replay::Refuse(format!("the command {} came with no statement pgferry can replay", message.tag));
    }
    Replay::Run(kept.join(";\n"))
}

/// `CONCURRENTLY` removed from an index command (CREATE/DROP INDEX, REINDEX,
/// DETACH PARTITION): it cannot run inside the apply transaction, and nothing
/// but pgferry writes to the target.
pub fn without_concurrently(statement: &str) -> String {
    let tokens = lex(statement);
    let mut out = String::with_capacity(statement.len());
    let mut last = 0;
    for token in tokens {
        if token.kind == Kind::Word && statement[token.start..token.end].eq_ignore_ascii_case("concurrently") {
            out.push_str(&statement[last..token.start]);
            last = token.end;
        }
    }
    out.push_str(&statement[last..]);
    out.trim().to_string()
}

/// The statements of a query text, trimmed, empty ones left out.
pub fn split_statements(text: &str) -> Vec<&str> {
    let mut statements = Vec::new();
    let mut start = 0;
    for token in lex(text) {
        if token.kind == Kind::Semicolon {
            statements.push(&text[start..token.start]);
            start = token.end;
        }
    }
    statements.push(&text[start..]);
    statements.into_iter().map(str::trim).filter(|s| !lex(s).is_empty()).collect()
}

/// The first `n` keywords of a statement, upper-case.
fn leading_words(statement: &str, n: usize) -> Vec<String> {
    lex(statement)
        .into_iter()
        .take(n)
        .filter(|t| t.kind == Kind::Word)
        .map(|t| statement[t.start..t.end].to_ascii_uppercase())
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Word,
    Semicolon,
    /// A literal, quoted identifier, number or operator.
    Other,
}

#[derive(Clone, Copy, Debug)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

/// PostgreSQL's lexical structure, as far as statement boundaries and
/// keywords need it; comments and whitespace produce no token.
fn lex(text: &str) -> Vec<Token> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        match c {
            b if b.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                i = text[i..].find('\n').map_or(bytes.len(), |n| i + n + 1);
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i = block_comment_end(bytes, i);
                continue;
            }
            b';' => {
                tokens.push(Token { kind: Kind::Semicolon, start, end: i + 1 });
                i += 1;
                continue;
            }
            b'\'' => i = quoted_end(bytes, i, b'\'', false),
            b'"' => i = quoted_end(bytes, i, b'"', false),
            b'$' => i = dollar_end(text, i).unwrap_or(i + 1),
            b if b.is_ascii_alphabetic() || b == b'_' || b >= 0x80 => {
                let mut end = i + 1;
                while end < bytes.len()
                    && (bytes[end].is_ascii_alphanumeric()
                        || bytes[end] == b'_'
                        || bytes[end] == b'$'
                        || bytes[end] >= 0x80)
                {
                    end += 1;
                }
                if end == i + 1 && (c == b'e' || c == b'E') && bytes.get(end) == Some(&b'\'') {
                    i = quoted_end(bytes, end, b'\'', true);
                } else {
                    tokens.push(Token { kind: Kind::Word, start, end });
                    i = end;
                    continue;
                }
            }
            _ => i += 1,
        }
        tokens.push(Token { kind: Kind::Other, start, end: i });
    }
    tokens
}

/// The end of a quoted string or identifier starting at `i` (doubled quotes
/// stay inside; with `backslash`, a backslash escapes the next byte).
fn quoted_end(bytes: &[u8], i: usize, quote: u8, backslash: bool) -> usize {
    let mut j = i + 1;
    while j < bytes.len() {
        if backslash && bytes[j] == b'\\' {
            j += 2;
            continue;
        }
        if bytes[j] == quote {
            if bytes.get(j + 1) == Some(&quote) {
                j += 2;
                continue;
            }
            return j + 1;
        }
        j += 1;
    }
    bytes.len()
}

/// The end of a (nested) block comment starting at `i`.
fn block_comment_end(bytes: &[u8], i: usize) -> usize {
    let (mut depth, mut j) = (0usize, i);
    while j + 1 < bytes.len() {
        if bytes[j] == b'/' && bytes[j + 1] == b'*' {
            depth += 1;
            j += 2;
        } else if bytes[j] == b'*' && bytes[j + 1] == b'/' {
            depth -= 1;
            j += 2;
            if depth == 0 {
                return j;
            }
        } else {
            j += 1;
        }
    }
    bytes.len()
}

/// The end of a dollar-quoted string starting at `i`, or `None` when the `$`
/// starts no quote (a parameter such as `$1`).
fn dollar_end(text: &str, i: usize) -> Option<usize> {
    let rest = &text[i + 1..];
    let tag_len = rest.find('$')?;
    let tag = &rest[..tag_len];
    let valid =
        tag.chars().next().is_none_or(|c| !c.is_ascii_digit()) && tag.chars().all(|c| c.is_alphanumeric() || c == '_');
    if !valid {
        return None;
    }
    let delimiter = &text[i..i + tag_len + 2];
    let body = i + tag_len + 2;
    Some(text[body..].find(delimiter).map_or(text.len(), |n| body + n + delimiter.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(query: &str) -> DdlMessage {
        DdlMessage { query: query.into(), tag: "ALTER TABLE".into(), ..DdlMessage::default() }
    }

    #[test]
    fn statements_split_outside_quotes_comments_and_dollar_quotes() {
        let text = "ALTER TABLE t ADD c text DEFAULT 'a;b'; -- x; y\n/* a; /* nested; */ b */ CREATE FUNCTION f() RETURNS int AS $f$ SELECT 1; $f$ LANGUAGE sql;  COMMENT ON TABLE \"x;y\" IS E'it\\'s; fine';";
        assert_eq!(
            split_statements(text),
            [
                "ALTER TABLE t ADD c text DEFAULT 'a;b'",
                "-- x; y\n/* a; /* nested; */ b */ CREATE FUNCTION f() RETURNS int AS $f$ SELECT 1; $f$ LANGUAGE sql",
                "COMMENT ON TABLE \"x;y\" IS E'it\\'s; fine'",
            ]
        );
        assert_eq!(split_statements("SELECT $1; ;"), ["SELECT $1"], "a parameter is not a dollar quote");
    }

    #[test]
    fn ddl_alone_is_replayed_settings_dropped_concurrently_removed() {
        let m = message("SET lock_timeout = '1s'; CREATE INDEX CONCURRENTLY i ON t (a); ALTER TABLE t ADD b int");
        assert_eq!(plan_replay(&m, &[]), Replay::Run("CREATE INDEX  i ON t (a);\nALTER TABLE t ADD b int".into()));
        assert_eq!(
            plan_replay(&m, std::slice::from_ref(&m.query)),
            Replay::AlreadyRun,
            "one text, replayed once per transaction"
        );
        let m = message("CREATE TABLE \"concurrently\" (x text DEFAULT 'concurrently')");
        assert_eq!(plan_replay(&m, &[]), Replay::Run(m.query.clone()), "a quoted name or literal is kept");
    }

    #[test]
    fn data_changes_transaction_control_and_indirect_ddl_are_refused() {
        for query in [
            "CREATE TABLE t (a int); INSERT INTO t VALUES (1)",
            "BEGIN; ALTER TABLE t ADD b int; COMMIT",
            "DO $$ BEGIN EXECUTE 'CREATE TABLE t ()'; END $$",
            "SELECT make_tables()",
            "SET ROLE app; CREATE TABLE t ()",
        ] {
            assert!(matches!(plan_replay(&message(query), &[]), Replay::Refuse(_)), "{query}");
        }
        let m = DdlMessage { unpublished: vec!["app.t".into()], ..message("CREATE TABLE app.t ()") };
        assert!(matches!(plan_replay(&m, &[]), Replay::Refuse(r) if r.contains("app.t")));
    }

    #[test]
    fn the_trigger_message_reads() {
        let m: DdlMessage = serde_json::from_str(
            r#"{"query":"ALTER TABLE t ADD c int","search_path":"\"$user\", public","tag":"ALTER TABLE","commands":[{"tag":"ALTER TABLE","type":"table","identity":"public.t"}],"unpublished":[]}"#,
        )
        .unwrap();
        assert_eq!(m.commands[0].identity.as_deref(), Some("public.t"));
        assert_eq!(m.search_path, "\"$user\", public");
    }
}
