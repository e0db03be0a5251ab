//! The one table mapping each pgoutput tag byte to the message it starts.
//!
//! Every pgoutput message begins with a single ASCII byte naming its type;
//! the names used here and in error messages are the manual's, so an error
//! can be looked up directly in
//! <https://www.postgresql.org/docs/current/protocol-logicalrep-message-formats.html>.

use std::fmt;

/// Which kind of pgoutput message; carried by errors to say where decoding failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageKind {
    Begin,
    LogicalMessage,
    Commit,
    Origin,
    Relation,
    Type,
    Insert,
    Update,
    Delete,
    Truncate,
    StreamStart,
    StreamStop,
    StreamCommit,
    StreamAbort,
    BeginPrepare,
    Prepare,
    CommitPrepared,
    RollbackPrepared,
    StreamPrepare,
}

impl MessageKind {
    /// The message a tag byte announces, or `None` for a tag pgoutput never sends.
    pub(crate) fn from_tag(tag: u8) -> Option<Self> {
        Some(match tag {
            b'B' => Self::Begin,
            b'M' => Self::LogicalMessage,
            b'C' => Self::Commit,
            b'O' => Self::Origin,
            b'R' => Self::Relation,
            b'Y' => Self::Type,
            b'I' => Self::Insert,
            b'U' => Self::Update,
            b'D' => Self::Delete,
            b'T' => Self::Truncate,
            b'S' => Self::StreamStart,
            b'E' => Self::StreamStop,
            b'c' => Self::StreamCommit,
            b'A' => Self::StreamAbort,
            b'b' => Self::BeginPrepare,
            b'P' => Self::Prepare,
            b'K' => Self::CommitPrepared,
            b'r' => Self::RollbackPrepared,
            b'p' => Self::StreamPrepare,
            _ => return None,
        })
    }

    /// The message's name as the PostgreSQL manual spells it.
    fn manual_name(self) -> &'static str {
        match self {
            Self::Begin => "Begin",
            Self::LogicalMessage => "Message",
            Self::Commit => "Commit",
            Self::Origin => "Origin",
            Self::Relation => "Relation",
            Self::Type => "Type",
            Self::Insert => "Insert",
            Self::Update => "Update",
            Self::Delete => "Delete",
            Self::Truncate => "Truncate",
            Self::StreamStart => "Stream Start",
            Self::StreamStop => "Stream Stop",
            Self::StreamCommit => "Stream Commit",
            Self::StreamAbort => "Stream Abort",
            Self::BeginPrepare => "Begin Prepare",
            Self::Prepare => "Prepare",
            Self::CommitPrepared => "Commit Prepared",
            Self::RollbackPrepared => "Rollback Prepared",
            Self::StreamPrepare => "Stream Prepare",
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.manual_name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_tag_is_known_and_nothing_else() {
        let known: Vec<u8> = (0..=u8::MAX).filter(|&tag| MessageKind::from_tag(tag).is_some()).collect();
        assert_eq!(known, b"ABCDEIKMOPRSTUYbcpr");
    }

    #[test]
    fn displays_the_manual_name() {
        assert_eq!(MessageKind::LogicalMessage.to_string(), "Message");
        assert_eq!(MessageKind::StreamAbort.to_string(), "Stream Abort");
        assert_eq!(MessageKind::from_tag(b'r'), Some(MessageKind::RollbackPrepared));
        assert_eq!(MessageKind::RollbackPrepared.to_string(), "Rollback Prepared");
    }
}
