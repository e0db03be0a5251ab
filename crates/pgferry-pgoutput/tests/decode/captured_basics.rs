//! Protocol version 1 messages captured from PostgreSQL 15: one transaction
//! per statement of `capture.sh`'s "basics" workload.

use bytes::Bytes;
use pgferry_pgoutput::{Column, Lsn, Message, MessageKind, OldTuple, RelationColumn, ReplicaIdentity};

use crate::fixtures::{decode_all, load, text, BASICS_BINARY, BASICS_TEXT};

const ACCOUNTS: u32 = 16393;
const LEDGER: u32 = 16401;
const AUDIT: u32 = 16412;
const DOCUMENTS: u32 = 16417;
const MOOD: u32 = 16386;
const INT4: u32 = 23;
const TEXT: u32 = 25;

fn messages() -> Vec<Message> {
    decode_all(BASICS_TEXT).into_iter().map(|(_, message)| message).collect()
}

fn lsn(text: &str) -> Lsn {
    text.parse().unwrap()
}

#[test]
fn decodes_every_message_in_order() {
    use MessageKind::*;
    let kinds: Vec<MessageKind> = messages().iter().map(Message::kind).collect();
    #[rustfmt::skip]
    let expected = [
        Begin, Type, Relation, Insert, Insert, Commit,  // INSERT INTO accounts
        Begin, Update, Commit,                           // UPDATE accounts SET balance
        Begin, Update, Commit,                           // UPDATE accounts SET id
        Begin, Delete, Commit,                           // DELETE FROM accounts
        Begin, Relation, Insert, Commit,                 // INSERT INTO audit
        Begin, Update, Commit,                           // UPDATE audit
        Begin, Delete, Commit,                           // DELETE FROM audit
        Begin, Relation, Insert, Commit,                 // INSERT INTO documents
        Begin, Update, Commit,                           // UPDATE documents SET title
        Begin, Relation, Insert, Commit,                 // INSERT INTO ledger
        Begin, Type, Relation, Relation, Truncate, Commit, // TRUNCATE accounts … CASCADE
        Begin, LogicalMessage, Commit,                   // transactional message
        LogicalMessage,                                  // non-transactional message
        Begin, Origin, Insert, Commit,                   // replayed from 'upstream'
    ];
    assert_eq!(kinds, expected);
}

#[test]
fn begin_and_commit_agree_with_each_other_and_the_slot() {
    let decoded = decode_all(BASICS_TEXT);
    let mut open_begin = None;
    let mut transactions = 0;
    for (row_lsn, message) in &decoded {
        match message {
            Message::Begin(begin) => open_begin = Some(begin.clone()),
            Message::Commit(commit) => {
                let begin = open_begin.take().expect("Commit without Begin");
                assert_eq!(begin.final_lsn, commit.commit_lsn);
                assert_eq!(begin.commit_time, commit.commit_time);
                // The slot reports a commit at the end of its record.
                assert_eq!(commit.end_lsn, *row_lsn);
                transactions += 1;
            }
            _ => {}
        }
    }
    assert_eq!(transactions, 13);

    let Message::Begin(first) = &decoded[0].1 else { panic!() };
    assert_eq!(first.final_lsn, lsn("0/1934AA8"));
    assert_eq!(first.xid, 734);
}

#[test]
fn type_message_names_a_user_defined_enum() {
    let Message::Type(mood) = &messages()[1] else { panic!() };
    assert_eq!(mood.xid, None);
    assert_eq!(mood.oid, MOOD);
    assert_eq!(mood.namespace, "public");
    assert_eq!(mood.name, "mood");
}

#[test]
fn relation_describes_the_table_and_its_key() {
    let Message::Relation(accounts) = &messages()[2] else { panic!() };
    assert_eq!(accounts.xid, None);
    assert_eq!(accounts.oid, ACCOUNTS);
    assert_eq!(accounts.namespace, "public");
    assert_eq!(accounts.name, "accounts");
    assert_eq!(accounts.replica_identity, ReplicaIdentity::Default);
    let column = |is_key, name: &str, type_oid, type_modifier| RelationColumn {
        is_key,
        name: name.to_owned(),
        type_oid,
        type_modifier,
    };
    assert_eq!(
        accounts.columns,
        [
            column(true, "id", INT4, -1),
            column(false, "owner", TEXT, -1),
            // numeric(12,2): ((12 << 16) | 2) + 4, the header size.
            column(false, "balance", 1700, (12 << 16 | 2) + 4),
            column(false, "feeling", MOOD, -1),
        ]
    );
}

#[test]
fn insert_carries_text_values_and_nulls() {
    let messages = messages();
    let Message::Insert(alice) = &messages[3] else { panic!() };
    assert_eq!(alice.xid, None);
    assert_eq!(alice.relation_oid, ACCOUNTS);
    assert_eq!(alice.new_tuple, [text("1"), text("alice"), text("10.50"), text("happy")]);
    let Message::Insert(bob) = &messages[4] else { panic!() };
    assert_eq!(bob.new_tuple, [text("2"), text("bob"), Column::Null, text("sad")]);
}

#[test]
fn update_that_keeps_the_key_sends_no_old_tuple() {
    let Message::Update(update) = &messages()[7] else { panic!() };
    assert_eq!(update.relation_oid, ACCOUNTS);
    assert_eq!(update.old_tuple, None);
    assert_eq!(update.new_tuple, [text("1"), text("alice"), text("20.00"), text("happy")]);
}

#[test]
fn update_of_the_key_sends_the_old_key() {
    let Message::Update(update) = &messages()[10] else { panic!() };
    assert_eq!(update.old_tuple, Some(OldTuple::Key(vec![text("2"), Column::Null, Column::Null, Column::Null])));
    assert_eq!(update.new_tuple, [text("3"), text("bob"), Column::Null, text("sad")]);
}

#[test]
fn delete_sends_the_old_key() {
    let Message::Delete(delete) = &messages()[13] else { panic!() };
    assert_eq!(delete.relation_oid, ACCOUNTS);
    assert_eq!(delete.old_tuple, OldTuple::Key(vec![text("3"), Column::Null, Column::Null, Column::Null]));
}

#[test]
fn replica_identity_full_sends_the_whole_old_row() {
    let messages = messages();
    let Message::Relation(audit) = &messages[16] else { panic!() };
    assert_eq!(audit.oid, AUDIT);
    assert_eq!(audit.replica_identity, ReplicaIdentity::Full);
    assert!(audit.columns.iter().all(|column| column.is_key));

    let Message::Update(update) = &messages[20] else { panic!() };
    assert_eq!(update.old_tuple, Some(OldTuple::Full(vec![text("7"), text("first"), text("1.5")])));
    assert_eq!(update.new_tuple, [text("7"), text("changed"), text("1.5")]);

    let Message::Delete(delete) = &messages[23] else { panic!() };
    assert_eq!(delete.old_tuple, OldTuple::Full(vec![text("7"), text("changed"), text("1.5")]));
    assert_eq!(delete.old_tuple.columns().len(), 3);
}

#[test]
fn unchanged_toasted_value_is_marked_and_not_sent() {
    let messages = messages();
    let Message::Insert(insert) = &messages[27] else { panic!() };
    assert_eq!(insert.relation_oid, DOCUMENTS);
    assert_eq!(insert.new_tuple[2], text(&"toast!".repeat(500)));

    let Message::Update(update) = &messages[30] else { panic!() };
    assert_eq!(update.old_tuple, None);
    assert_eq!(update.new_tuple, [text("1"), text("final"), Column::UnchangedToast]);
}

#[test]
fn truncate_lists_cascaded_tables_and_options() {
    let Message::Truncate(truncate) = &messages()[40] else { panic!() };
    assert_eq!(truncate.xid, None);
    assert!(truncate.cascade);
    assert!(truncate.restart_identity);
    assert_eq!(truncate.relation_oids, [ACCOUNTS, LEDGER]);
}

#[test]
fn logical_messages_keep_prefix_content_and_transactionality() {
    let decoded = decode_all(BASICS_TEXT);
    let Message::LogicalMessage(hello) = &decoded[43].1 else { panic!() };
    assert_eq!(hello.xid, None);
    assert!(hello.transactional);
    assert_eq!(hello.lsn, lsn("0/19375B8"));
    assert_eq!(hello.prefix, "pfx");
    assert_eq!(hello.content, Bytes::from_static(b"hello"));

    let Message::LogicalMessage(immediate) = &decoded[45].1 else { panic!() };
    assert!(!immediate.transactional);
    assert_eq!(immediate.lsn, decoded[45].0);
    assert_eq!(immediate.content, Bytes::from_static(b"non-transactional"));
}

#[test]
fn origin_names_the_upstream_node_and_its_commit() {
    let messages = messages();
    let Message::Origin(origin) = &messages[47] else { panic!() };
    assert_eq!(origin.name, "upstream");
    assert_eq!(origin.commit_lsn, lsn("0/ABCDEF"));
    // pg_replication_origin_xact_setup set the commit time to
    // 2024-01-02 03:04:05.678901 UTC, which is 1704164645.678901 in Unix time.
    let Message::Begin(begin) = &messages[46] else { panic!() };
    assert_eq!(begin.commit_time.unix_micros(), 1_704_164_645_678_901);
    let Message::Insert(insert) = &messages[48] else { panic!() };
    assert_eq!(insert.relation_oid, AUDIT);
    assert_eq!(insert.new_tuple, [text("8"), text("replayed"), Column::Null]);
}

#[test]
fn column_values_are_slices_of_the_input_not_copies() {
    let captured = &load(BASICS_TEXT)[3];
    let Ok(Message::Insert(insert)) = pgferry_pgoutput::decode(captured.bytes.clone(), false) else { panic!() };
    let Column::Text(owner) = &insert.new_tuple[1] else { panic!() };
    let input = captured.bytes.as_ptr_range();
    assert!(input.contains(&owner.as_ptr()));
}

#[test]
fn binary_mode_sends_values_in_send_format() {
    let binary: Vec<Message> = decode_all(BASICS_BINARY).into_iter().map(|(_, message)| message).collect();
    // The same workload, so the same messages; only the values' format differs.
    let kinds = |messages: &[Message]| messages.iter().map(Message::kind).collect::<Vec<_>>();
    assert_eq!(kinds(&binary), kinds(&messages()));

    let Message::Insert(bob) = &binary[4] else { panic!() };
    assert_eq!(
        bob.new_tuple,
        [
            Column::Binary(Bytes::from_static(&[0, 0, 0, 2])), // int4 2
            Column::Binary(Bytes::from_static(b"bob")),
            Column::Null,
            Column::Binary(Bytes::from_static(b"sad")), // enum_send is the label
        ]
    );
    let Message::Insert(alice) = &binary[3] else { panic!() };
    // numeric_send of 10.50: 2 digits, weight 0, positive, scale 2, base-10000
    // digits 10 and 5000.
    assert_eq!(alice.new_tuple[2], Column::Binary(Bytes::from_static(&[0, 2, 0, 0, 0, 0, 0, 2, 0, 10, 0x13, 0x88])));
    let Message::Update(update) = &binary[30] else { panic!() };
    assert_eq!(update.new_tuple[2], Column::UnchangedToast);
}
