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

use std::collections::BTreeMap;

use serde::Deserialize;

/// The session settings that change what a DDL text means, captured by the
/// source's event trigger with each command and set (transaction-locally) on
/// the target while its replay runs:
///
/// - `search_path`: which schema every unqualified name resolves to, the new
///   object's own included (an application whose role has `app, public` creates
///   `app.t` with `CREATE TABLE t`);
/// - `DateStyle`, `IntervalStyle`, `TimeZone`: how date, time and interval
///   literals read (a default `'03/04/2020'`, a partition bound on
///   `timestamptz`), stored as constants when the command runs;
/// - `standard_conforming_strings`: whether a backslash escapes in `'...'`,
///   which changes both the literals and where the text's statements end;
/// - `default_tablespace`, `default_table_access_method`: where and how new
///   tables and indexes are stored (the copy keeps tablespaces too; a target
///   without that tablespace refuses the replay, by name);
/// - `transform_null_equals`, `array_nulls`: how `= NULL` and `NULL` inside an
///   array literal read in defaults, checks and index predicates.
///
/// The role the command ran as travels apart ([`DdlMessage::role`]), and
/// `check_function_bodies` is always off during a replay: the source accepted
/// the body already, and a check on the target can only fail spuriously (an
/// object created later in the same text). Settings that only change output
/// (`extra_float_digits`, `bytea_output`) or pgferry's own session (timeouts)
/// are not carried; neither is `lc_monetary` (a locale the target may lack;
/// money literals in DDL read under the apply session's `C`).
pub const REPLAY_SETTINGS: [&str; 9] = [
    "search_path",
    "DateStyle",
    "IntervalStyle",
    "TimeZone",
    "standard_conforming_strings",
    "default_tablespace",
    "default_table_access_method",
    "transform_null_equals",
    "array_nulls",
];

/// What the source's event trigger emits (JSON) at `ddl_command_end`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct DdlMessage {
    /// The client's query text (`current_query()`).
    pub query: String,
    /// The session's `search_path` when the command ran (also in
    /// [`DdlMessage::settings`]; triggers installed before those were carried
    /// captured their own pinned path here).
    pub search_path: String,
    /// The session's [`REPLAY_SETTINGS`] when the command ran.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// When the client's message holding the command arrived
    /// (`statement_timestamp()`, UTC): the commands of one multi-statement text
    /// share it, so the text is replayed once for all of them, while the same
    /// text sent again is another command.
    #[serde(default)]
    pub statement_start: Option<String>,
    /// The role the command ran as (the trigger's `current_user`): the replay
    /// runs as it when pgferry's target role may, so owners match.
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

impl DdlMessage {
    /// The settings to replay under: the captured ones, with the search_path
    /// from its own field when a trigger did not capture settings.
    pub fn replay_settings(&self) -> BTreeMap<String, String> {
        let mut settings = self.settings.clone();
        settings.entry("search_path".into()).or_insert_with(|| self.search_path.clone());
        settings
    }

    /// Whether a backslash escapes in the text's ordinary string literals.
    fn backslash_escapes(&self) -> bool {
        self.settings.get("standard_conforming_strings").is_some_and(|v| v.eq_ignore_ascii_case("off"))
    }

    /// What identifies the client's message that carried the command.
    pub fn replay_key(&self) -> ReplayKey {
        ReplayKey { statement_start: self.statement_start.clone(), query: self.query.clone() }
    }
}

/// The client message a replayed text came from: its arrival and its text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayKey {
    pub statement_start: Option<String>,
    pub query: String,
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
    /// Run this text on the target, under the source's settings.
    Run(String),
    /// Nothing to run: the client message's text was already replayed for an
    /// earlier command of it (one multi-statement text, several commands).
    AlreadyRun,
    /// Stop change capture: the reason, for the operator.
    Refuse(String),
}

/// First words of the statements replayed as they are.
const DDL_WORDS: [&str; 9] = ["CREATE", "ALTER", "DROP", "COMMENT", "GRANT", "REVOKE", "REFRESH", "SECURITY", "IMPORT"];
/// Session settings: dropped before the text's first command (the captured
/// settings hold their effect), kept as `SET LOCAL` between its commands.
const SETTING_WORDS: [&str; 2] = ["SET", "RESET"];

/// Decides how a DDL message is replayed (pure). `replayed` holds the client
/// messages whose text was already run in the current source transaction.
///
/// A text is the unit of replay, a client message the unit of identity: the
/// commands of one multi-statement text arrive as several messages sharing
/// [`DdlMessage::statement_start`], and only the first runs the text; the same
/// text sent again (a column added, dropped and added again; an index created
/// twice) is another client message and runs again. A text of one statement
/// is never taken for an earlier one.
pub fn plan_replay(message: &DdlMessage, replayed: &[ReplayKey]) -> Replay {
    if !message.unpublished.is_empty() {
        return Replay::Refuse(format!(
            "the new table(s) {} could not be added to the migration's publication (pgferry's role on the source does not own them): their rows are not replicated",
            message.unpublished.join(", ")
        ));
    }
    let backslash = message.backslash_escapes();
    let statements = split_statements_with(&message.query, backslash);
    if statements.len() > 1 && replayed.contains(&message.replay_key()) {
        return Replay::AlreadyRun;
    }
    let last_ddl = statements
        .iter()
        .rposition(|s| leading_words_with(s, 1, backslash).first().is_some_and(|w| DDL_WORDS.contains(&w.as_str())));
    let mut kept = Vec::new();
    for (i, statement) in statements.iter().enumerate() {
        let words = leading_words_with(statement, 2, backslash);
        let Some(first) = words.first() else { continue };
        if SETTING_WORDS.contains(&first.as_str()) && !words.iter().any(|w| w == "ROLE" || w == "SESSION") {
            // Before the first command the captured settings hold its effect;
            // after the last one it changes nothing replayed.
            if kept.is_empty() || last_ddl.is_none_or(|last| i > last) {
                continue;
            }
            match local_setting(statement, backslash) {
                Setting::Other => continue,
                Setting::Local(sql) => {
                    kept.push(sql);
                    continue;
                }
                Setting::Unknowable(name) => {
                    return Replay::Refuse(format!(
                        "the text resets {name} between its commands, to a value of the source's session pgferry does not know"
                    ))
                }
            }
        }
        if !DDL_WORDS.contains(&first.as_str()) {
            return Replay::Refuse(format!(
                "the command {} ran inside a {first} statement, which pgferry does not replay (its data changes arrive through the stream, and the DDL it ran cannot be read back)",
                message.tag
            ));
        }
        kept.push(without_concurrently_with(statement, backslash));
    }
    if kept.is_empty() {
        return Replay::Refuse(format!("the command {} came with no statement pgferry can replay", message.tag));
    }
    Replay::Run(kept.join(";\n"))
}

/// A `SET`/`RESET` between a text's commands, as the replay takes it.
#[derive(Debug, PartialEq, Eq)]
enum Setting {
    /// Not one of [`REPLAY_SETTINGS`]: it changes no command's meaning.
    Other,
    /// Set for the rest of the replay's transaction.
    Local(String),
    /// Back to the source session's default, which pgferry does not know.
    Unknowable(String),
}

fn local_setting(statement: &str, backslash: bool) -> Setting {
    let tokens = lex_with(statement, backslash);
    let word = |i: usize| {
        tokens
            .get(i)
            .filter(|t| t.kind == Kind::Word)
            .map(|t| statement[t.start..t.end].to_ascii_lowercase())
            .unwrap_or_default()
    };
    let reset = word(0) == "reset";
    let mut at = 1;
    if !reset && word(1) == "local" {
        at = 2;
    }
    let name = match (word(at).as_str(), word(at + 1).as_str()) {
        ("time", "zone") => "timezone".to_string(),
        ("schema", _) => "search_path".to_string(),
        ("all", _) if reset => return Setting::Unknowable("every setting (RESET ALL)".into()),
        (name, _) => name.to_string(),
    };
    let Some(captured) = REPLAY_SETTINGS.iter().find(|s| s.eq_ignore_ascii_case(&name)) else { return Setting::Other };
    let to_default = tokens.last().is_some_and(|t| statement[t.start..t.end].eq_ignore_ascii_case("default"));
    if reset || to_default {
        return Setting::Unknowable((*captured).to_string());
    }
    let Some(rest) = tokens.get(at).map(|t| t.start) else { return Setting::Other };
    Setting::Local(format!("SET LOCAL {}", statement[rest..].trim()))
}

/// `CONCURRENTLY` removed from an index command (CREATE/DROP INDEX, REINDEX,
/// DETACH PARTITION): it cannot run inside the apply transaction, and nothing
/// but pgferry writes to the target.
pub fn without_concurrently(statement: &str) -> String {
    without_concurrently_with(statement, false)
}

fn without_concurrently_with(statement: &str, backslash: bool) -> String {
    let tokens = lex_with(statement, backslash);
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

/// Why a replayed message's command may have left the existing rows of its
/// tables different on the two sides, when it may: the command rewrote them
/// with values each side computed for itself, which change capture never
/// carries (pure, conservative). Such are an `ALTER TABLE ... ADD COLUMN` with
/// a default that is not a constant (`random()`, `clock_timestamp()`,
/// `nextval()`, a `serial` type) or an identity (numbered in each side's
/// physical order), an `ALTER ... TYPE ... USING` of any expression, and a
/// `CREATE TABLE AS` (its rows computed by a query on each side), and an
/// `ALTER TABLE ... SET LOGGED` (the rows written while the table was unlogged
/// never reached the WAL, so the target lacks them). The tables are those of
/// the message's commands.
pub fn rewrites_rows(message: &DdlMessage) -> Option<String> {
    let backslash = message.backslash_escapes();
    let why =
        split_statements_with(&message.query, backslash).into_iter().find_map(|s| statement_rewrites(s, backslash))?;
    Some(format!("{why} ({} on the source)", message.tag))
}

fn statement_rewrites(statement: &str, backslash: bool) -> Option<&'static str> {
    let tokens = lex_with(statement, backslash);
    let text = |t: &Token| &statement[t.start..t.end];
    let is = |t: &Token, word: &str| t.kind == Kind::Word && text(t).eq_ignore_ascii_case(word);
    let first: Vec<&Token> = tokens.iter().filter(|t| t.kind == Kind::Word).take(2).collect();
    if first.len() == 2 && is(first[0], "create") {
        let mut words = tokens.iter().filter(|t| t.kind == Kind::Word).skip(1);
        // CREATE [GLOBAL|LOCAL] [TEMP|UNLOGGED] TABLE ... AS
        let creates_table = words.by_ref().take(3).any(|t| is(t, "table"));
        let as_query = creates_table
            && tokens.iter().any(|t| is(t, "as"))
            && !tokens.iter().any(|t| is(t, "partition") || is(t, "of"));
        return as_query.then_some("its rows were computed by a query on each side (CREATE TABLE AS)");
    }
    if first.len() < 2 || !is(first[0], "alter") || !(is(first[1], "table") || is(first[1], "foreign")) {
        return None;
    }
    // The subcommands after `ALTER [FOREIGN] TABLE`, split at depth-0 commas.
    let skip = if is(first[1], "foreign") { 3 } else { 2 };
    let mut depth = 0i32;
    let mut clauses: Vec<Vec<&Token>> = vec![Vec::new()];
    for token in tokens.iter().skip(skip) {
        match (token.kind, text(token)) {
            (Kind::Symbol, "(") => depth += 1,
            (Kind::Symbol, ")") => depth -= 1,
            (Kind::Symbol, ",") if depth == 0 => {
                clauses.push(Vec::new());
                continue;
            }
            _ => {}
        }
        if let Some(clause) = clauses.last_mut() {
            clause.push(token);
        }
    }
    for clause in &clauses {
        if clause.windows(2).any(|w| is(w[0], "set") && is(w[1], "logged")) {
            return Some("an unlogged table was made logged: the rows written to it before were never in the WAL");
        }
        let Some(add) = clause.iter().position(|t| is(t, "add") || is(t, "alter")) else { continue };
        let adding = is(clause[add], "add");
        let rest = &clause[add + 1..];
        if adding {
            let constraint = rest.first().is_some_and(|t| {
                ["constraint", "primary", "unique", "foreign", "check", "exclude"].iter().any(|w| is(t, w))
            });
            if constraint {
                continue;
            }
            if rest.iter().any(|t| is(t, "identity")) {
                return Some(
                    "a column numbered by an identity was added: each side numbers its rows in its own physical order",
                );
            }
            if rest.iter().any(|t| {
                ["serial", "serial2", "serial4", "serial8", "smallserial", "bigserial"].iter().any(|w| is(t, w))
            }) {
                return Some("a serial column was added: each side numbers its rows in its own physical order");
            }
            if let Some(default) = rest.iter().position(|t| is(t, "default")) {
                if !constant_default(&rest[default + 1..], &text) {
                    return Some("a column with a default that is not a constant was added: each side computed it for its own rows");
                }
            }
        } else if rest.iter().any(|t| is(t, "type")) && rest.iter().any(|t| is(t, "using")) {
            return Some("a column's type was changed with USING: each side computed it for its own rows");
        }
    }
    None
}

/// Whether the tokens after `DEFAULT` are a constant: `[+|-] literal [:: type
/// words [(n)] [[]]]`, `NULL`, `TRUE` or `FALSE`, then the end of the column's
/// definition or a constraint.
fn constant_default<'t>(tokens: &[&Token], text: &impl Fn(&Token) -> &'t str) -> bool {
    let mut i = 0;
    while tokens.get(i).is_some_and(|t| t.kind == Kind::Symbol && matches!(text(t), "+" | "-")) {
        i += 1;
    }
    let Some(value) = tokens.get(i) else { return false };
    let literal = matches!(value.kind, Kind::Literal | Kind::Number)
        || (value.kind == Kind::Word && ["null", "true", "false"].iter().any(|w| text(value).eq_ignore_ascii_case(w)));
    // 'now', 'today' and the like read as the moment the command ran: on each side another.
    let moment = ["now", "today", "tomorrow", "yesterday"]
        .iter()
        .any(|w| text(value).trim_start_matches(['E', 'e']).trim_matches('\'').trim().eq_ignore_ascii_case(w));
    if !literal || moment {
        return false;
    }
    i += 1;
    const ENDS: [&str; 9] =
        ["not", "null", "constraint", "check", "primary", "unique", "references", "collate", "generated"];
    while let Some(t) = tokens.get(i) {
        if t.kind == Kind::Word && ENDS.iter().any(|w| text(t).eq_ignore_ascii_case(w)) {
            return true;
        }
        // A cast: `::` then type words, a modifier, array brackets.
        let cast_part = match t.kind {
            Kind::Symbol => matches!(text(t), ":" | "(" | ")" | "[" | "]"),
            Kind::Word | Kind::Number | Kind::QuotedIdent => true,
            _ => false,
        };
        if !cast_part || (t.kind == Kind::Word && i > 0 && tokens[i - 1].kind == Kind::Literal) {
            return false;
        }
        i += 1;
    }
    true
}

/// The statements of a query text, trimmed, empty ones left out.
pub fn split_statements(text: &str) -> Vec<&str> {
    split_statements_with(text, false)
}

/// The same, `backslash` when `standard_conforming_strings` is off (a
/// backslash then escapes inside `'...'`, a quote included).
fn split_statements_with(text: &str, backslash: bool) -> Vec<&str> {
    let mut statements = Vec::new();
    let mut start = 0;
    for token in lex_with(text, backslash) {
        if token.kind == Kind::Semicolon {
            statements.push(&text[start..token.start]);
            start = token.end;
        }
    }
    statements.push(&text[start..]);
    statements.into_iter().map(str::trim).filter(|s| !lex_with(s, backslash).is_empty()).collect()
}

/// The first `n` keywords of a statement, upper-case.
fn leading_words_with(statement: &str, n: usize, backslash: bool) -> Vec<String> {
    lex_with(statement, backslash)
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
    /// A string: `'...'`, `E'...'`, dollar-quoted.
    Literal,
    Number,
    QuotedIdent,
    /// One byte of an operator or punctuation.
    Symbol,
}

#[derive(Clone, Copy, Debug)]
struct Token {
    kind: Kind,
    start: usize,
    end: usize,
}

/// PostgreSQL's lexical structure, as far as statement boundaries, keywords
/// and literals need it; comments and whitespace produce no token. With
/// `backslash`, ordinary strings take backslash escapes
/// (`standard_conforming_strings` off).
fn lex_with(text: &str, backslash: bool) -> Vec<Token> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        let kind = match c {
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
                i += 1;
                Kind::Semicolon
            }
            b'\'' => {
                i = quoted_end(bytes, i, b'\'', backslash);
                Kind::Literal
            }
            b'"' => {
                i = quoted_end(bytes, i, b'"', false);
                Kind::QuotedIdent
            }
            b'$' => match dollar_end(text, i) {
                Some(end) => {
                    i = end;
                    Kind::Literal
                }
                None => {
                    i += 1;
                    Kind::Symbol
                }
            },
            b if b.is_ascii_digit() => {
                while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'.' || bytes[i] == b'_') {
                    i += 1;
                }
                Kind::Number
            }
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
                    Kind::Literal
                } else {
                    i = end;
                    Kind::Word
                }
            }
            _ => {
                i += 1;
                Kind::Symbol
            }
        };
        tokens.push(Token { kind, start, end: i });
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
    fn settings_between_commands_are_kept_local_and_a_reset_there_is_refused() {
        let m = message("SET search_path = a; CREATE TABLE t (); SET search_path = b; SET lock_timeout = 1; CREATE TABLE u (); SET search_path = c");
        assert_eq!(
            plan_replay(&m, &[]),
            Replay::Run("CREATE TABLE t ();\nSET LOCAL search_path = b;\nCREATE TABLE u ()".into())
        );
        let m = message("CREATE TABLE t (); SET LOCAL TIME ZONE 'UTC'; CREATE TABLE u ()");
        assert_eq!(
            plan_replay(&m, &[]),
            Replay::Run("CREATE TABLE t ();\nSET LOCAL TIME ZONE 'UTC';\nCREATE TABLE u ()".into())
        );
        for query in [
            "CREATE TABLE t (); RESET search_path; CREATE TABLE u ()",
            "CREATE TABLE t (); SET datestyle TO DEFAULT; CREATE TABLE u ()",
            "CREATE TABLE t (); RESET ALL; CREATE TABLE u ()",
        ] {
            assert!(matches!(plan_replay(&message(query), &[]), Replay::Refuse(_)), "{query}");
        }
        assert!(
            matches!(plan_replay(&message("RESET search_path; CREATE TABLE t ()"), &[]), Replay::Run(_)),
            "before the first command: captured"
        );
    }

    #[test]
    fn backslash_escapes_follow_the_sessions_standard_conforming_strings() {
        let mut m = message("COMMENT ON TABLE t IS 'it\\'s; fine'");
        m.settings.insert("standard_conforming_strings".into(), "off".into());
        assert_eq!(plan_replay(&m, &[]), Replay::Run(m.query.clone()));
        m.settings.insert("standard_conforming_strings".into(), "on".into());
        assert!(matches!(plan_replay(&m, &[]), Replay::Refuse(_)), "read with conforming strings, the text splits");
    }

    #[test]
    fn commands_that_rewrite_rows_with_values_of_each_side_are_named() {
        for query in [
            "ALTER TABLE t ADD COLUMN r double precision DEFAULT random()",
            "ALTER TABLE t ADD COLUMN at timestamptz NOT NULL DEFAULT clock_timestamp()",
            "ALTER TABLE t ADD u uuid DEFAULT gen_random_uuid(), ADD v int",
            "ALTER TABLE t ADD COLUMN n int DEFAULT 1 + nextval('s')",
            "ALTER TABLE t ADD COLUMN at timestamptz DEFAULT 'now'::timestamptz",
            "ALTER TABLE t ADD COLUMN at timestamptz DEFAULT now()",
            "ALTER TABLE t ADD COLUMN at timestamptz DEFAULT CURRENT_TIMESTAMP",
            "ALTER TABLE t ADD COLUMN id bigserial",
            "ALTER TABLE t ADD COLUMN id int GENERATED ALWAYS AS IDENTITY",
            "ALTER TABLE t ALTER COLUMN c TYPE bigint USING c::bigint",
            "ALTER TABLE t ALTER c SET DATA TYPE text USING md5(random()::text)",
            "CREATE TABLE s AS SELECT random() AS r",
            "ALTER TABLE t ADD b int; ALTER TABLE t ADD c float DEFAULT random()",
            "ALTER TABLE t SET LOGGED",
            "ALTER TABLE IF EXISTS t ADD COLUMN b int, SET LOGGED",
        ] {
            assert!(rewrites_rows(&message(query)).is_some(), "{query}");
        }
        for query in [
            "ALTER TABLE t ADD COLUMN k int DEFAULT 7",
            "ALTER TABLE t ADD COLUMN k int NOT NULL DEFAULT -7",
            "ALTER TABLE t ADD COLUMN s text DEFAULT 'random()'::text COLLATE \"C\"",
            "ALTER TABLE t ADD COLUMN s varchar(10)[] DEFAULT '{}'::varchar(10)[] NOT NULL",
            "ALTER TABLE t ADD COLUMN b boolean DEFAULT false, ADD COLUMN n numeric DEFAULT NULL",
            "ALTER TABLE t ADD COLUMN g int GENERATED ALWAYS AS (a * 2) STORED",
            "ALTER TABLE t ALTER COLUMN c SET DEFAULT random()",
            "ALTER TABLE t ALTER COLUMN c TYPE bigint",
            "ALTER TABLE t ADD CONSTRAINT c CHECK (a > random())",
            "CREATE TABLE p2 PARTITION OF p FOR VALUES FROM (1) TO (2)",
            "CREATE INDEX ON t (a)",
            "ALTER TABLE t SET UNLOGGED",
        ] {
            assert_eq!(rewrites_rows(&message(query)), None, "{query}");
        }
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
            plan_replay(&m, &[m.replay_key()]),
            Replay::AlreadyRun,
            "one client message's text, replayed once for its commands"
        );
        let later = DdlMessage { statement_start: Some("2026-01-01T00:00:01".into()), ..m.clone() };
        assert!(
            matches!(plan_replay(&later, &[m.replay_key()]), Replay::Run(_)),
            "the same text sent again runs again"
        );
        let single = message("CREATE INDEX ON t (a)");
        assert!(
            matches!(plan_replay(&single, &[single.replay_key()]), Replay::Run(_)),
            "a one-statement text is never taken for an earlier one"
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
