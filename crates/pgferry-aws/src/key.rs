//! The KMS key the encrypted instance gets (`--kms-key`), checked before the
//! plan that names it is journaled.
//!
//! The key is final (RDS cannot change an instance's key) and a migration's plan
//! is pinned by its first run, so a key that cannot work must be refused before
//! anything is written: otherwise a typo would lock the migration's name to a
//! key that does not exist. RDS uses a key of the instance's own region only;
//! a key ARN of another region is refused without asking KMS, and the key KMS
//! resolves (an alias names a key) is checked again. A key of another account
//! is possible (its key policy must let this account and RDS use it) and is
//! only pointed out.

use pgferry::{Error, ErrorKind, Result};

use crate::control::ControlPlane;
use crate::retry::{call, Pacing};

/// The region and account of a KMS ARN (`arn:<partition>:kms:<region>:<account>:key/...` or `alias/...`).
fn kms_arn(text: &str) -> Option<(&str, &str)> {
    let mut parts = text.splitn(6, ':');
    let (arn, _partition, service) = (parts.next()?, parts.next()?, parts.next()?);
    if arn != "arn" || service != "kms" {
        return None;
    }
    Some((parts.next()?, parts.next()?))
}

/// Where the instance is: the region and account of its RDS ARN.
#[derive(Clone, Copy, Debug)]
pub struct Home<'a> {
    pub region: &'a str,
    pub account: &'a str,
}

fn usage(requested: &str, why: String, hint: &str) -> Error {
    Error::new(ErrorKind::Usage, format!("--kms-key {requested}: {why}")).with_hint(hint.to_owned())
}

const KEY_HINT: &str = "give a key of the instance's region: an alias (alias/name), a key id, or a key ARN \
     (aws kms list-aliases lists them); nothing was created or recorded";

/// Checks `requested` and returns its key ARN: it exists, is enabled, and is in the instance's region.
pub async fn resolve<C: ControlPlane>(
    cloud: &C,
    pacing: &Pacing,
    requested: &str,
    home: Option<Home<'_>>,
) -> Result<String> {
    let elsewhere = |region: &str| {
        usage(
            requested,
            format!(
                "the key is in region {region}, the instance in {}: RDS encrypts with a key of the instance's region",
                home.map_or("", |h| h.region)
            ),
            KEY_HINT,
        )
    };
    if let (Some((region, _)), Some(home)) = (kms_arn(requested), home) {
        if region != home.region {
            return Err(elsewhere(region));
        }
    }
    // KMS's answers to a key that does not exist here, or is not a key's name at all.
    const NO_SUCH_KEY: [&str; 3] = ["NotFoundException", "InvalidArnException", "ValidationException"];
    let key = call(pacing, || async {
        match cloud.describe_key(requested).await {
            Err(err) if err.code.as_deref().is_some_and(|c| NO_SUCH_KEY.contains(&c)) => Ok(Err(err.message)),
            other => other.map(Ok),
        }
    })
    .await?
    .map_err(|message| usage(requested, format!("KMS has no such key here ({message})"), KEY_HINT))?;
    if !key.enabled {
        return Err(Error::new(
            ErrorKind::Precondition,
            format!("the KMS key {requested} ({}) is not enabled", key.arn),
        )
        .with_hint("enable it (aws kms enable-key), or cancel its deletion"));
    }
    if let (Some((region, account)), Some(home)) = (kms_arn(&key.arn), home) {
        if region != home.region {
            return Err(elsewhere(region));
        }
        if account != home.account {
            tracing::warn!(key = %key.arn, account, "the key belongs to another account: its key policy must let this account and RDS use it");
        }
    }
    Ok(key.arn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kms_arn_gives_its_region_and_account() {
        assert_eq!(kms_arn("arn:aws:kms:eu-west-1:123456789012:key/abcd"), Some(("eu-west-1", "123456789012")));
        assert_eq!(kms_arn("arn:aws-cn:kms:cn-north-1:1:alias/x"), Some(("cn-north-1", "1")));
        assert_eq!(kms_arn("alias/prod"), None);
        assert_eq!(kms_arn("arn:aws:rds:eu-west-1:1:db:x"), None);
    }
}
