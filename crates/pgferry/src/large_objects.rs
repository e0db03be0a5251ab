//! Large objects: compared by content, and brought up to date at the cutover.
//!
//! Logical replication carries no large object: the copy restores them from its
//! snapshot, and what the application creates, writes or unlinks afterwards
//! reaches the target only here. Each side computes one digest per object
//! (`md5(lo_get(oid))` with its owner and privileges, server side; `lo_get` needs only the privilege to read
//! the object, where `pg_largeobject` itself is closed to non-superusers on
//! RDS); the digests are compared side by side
//! (`pgferry_core::fidelity::large_object_differences`) and only the objects
//! that differ are copied, in pieces of [`PIECE_BYTES`], or unlinked, in one
//! target transaction. The cutover calls [`sync_large_objects`] before its
//! fence (the bulk of the differences) and again inside it, after the drain
//! (only what changed since).

use std::collections::BTreeMap;
use std::time::Instant;

use pgferry_core::fidelity::{large_object_differences, LargeObjectDifferences};
use pgferry_core::sql::{Ident, Sql};
use serde::Serialize;
use tokio_postgres::{Client, GenericClient};

use crate::error::{Error, Result};

/// Bytes read from the source and written to the target per round trip.
const PIECE_BYTES: i32 = 1 << 20;

/// One digest per large object, by OID: its contents, owner and privileges
/// (grantee, privilege, grant option; the grantor left out, as the parity gate
/// does), so a `GRANT ... ON LARGE OBJECT` after the copy is a change too.
pub(crate) async fn digests(client: &impl GenericClient, side: &str) -> Result<BTreeMap<u32, String>> {
    let rows = client
        .query(
            "SELECT m.oid, md5(lo_get(m.oid)) || ' ' || pg_get_userbyid(m.lomowner) || ' ' || coalesce(
                 (SELECT string_agg(p, ',' ORDER BY p) FROM (
                     SELECT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END
                            || '=' || a.privilege_type || CASE WHEN a.is_grantable THEN '*' ELSE '' END
                     FROM aclexplode(m.lomacl) a) AS privileges(p)), '')
             FROM pg_largeobject_metadata m ORDER BY m.oid",
            &[],
        )
        .await
        .map_err(|e| Error::server(&format!("reading the large objects' digests on the {side}"), e))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The source's owner and privileges given to a large object just created on
/// the target, for the roles the target has (one it lacks is logged: the
/// digests then still differ, and validation says so).
async fn owned_and_granted(src: &impl GenericClient, tx: &impl GenericClient, oid: u32) -> Result<()> {
    let fail = |doing: &str| {
        let doing = format!("{doing} the large object {oid}");
        move |e| Error::server(&doing, e)
    };
    let owner: String = src
        .query_one("SELECT pg_get_userbyid(lomowner)::text FROM pg_largeobject_metadata WHERE oid = $1", &[&oid])
        .await
        .map_err(fail("reading on the source the owner of"))?
        .get(0);
    let privileges = src
        .query(
            "SELECT a.grantee = 0, pg_get_userbyid(a.grantee)::text, a.privilege_type, a.is_grantable
             FROM pg_largeobject_metadata m, aclexplode(m.lomacl) a WHERE m.oid = $1 AND a.grantee <> m.lomowner",
            &[&oid],
        )
        .await
        .map_err(fail("reading on the source the privileges on"))?;
    let exists = |role: String| async move {
        tx.query_one("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", &[&role])
            .await
            .map(|r| r.get::<_, bool>(0))
            .map_err(|e| Error::server("looking up a role on the target", e))
    };
    if exists(owner.clone()).await? {
        let sql =
            Sql::new("ALTER LARGE OBJECT ").int(i64::from(oid)).push(" OWNER TO ").ident(&Ident::from_catalog(owner));
        tx.batch_execute(sql.as_str()).await.map_err(fail("setting on the target the owner of"))?;
    } else {
        tracing::warn!("large object {oid}: its owner {owner:?} is not a role on the target; it stays owned by pgferry's role there");
    }
    for p in privileges {
        let (public, grantee, privilege, grantable): (bool, String, String, bool) =
            (p.get(0), p.get(1), p.get(2), p.get(3));
        let keyword = match privilege.as_str() {
            "SELECT" => "SELECT",
            "UPDATE" => "UPDATE",
            _ => continue,
        };
        let to = match public {
            true => Sql::new("PUBLIC"),
            false if exists(grantee.clone()).await? => Sql::default().ident(&Ident::from_catalog(grantee)),
            false => {
                tracing::warn!("large object {oid}: {privilege} for {grantee:?} not given, no such role on the target");
                continue;
            }
        };
        let sql = Sql::new("GRANT ")
            .push(keyword)
            .push(" ON LARGE OBJECT ")
            .int(i64::from(oid))
            .push(" TO ")
            .append(to)
            .push(if grantable { " WITH GRANT OPTION" } else { "" });
        tx.batch_execute(sql.as_str()).await.map_err(fail("granting on the target the privileges on"))?;
    }
    Ok(())
}

/// What [`sync_large_objects`] did.
#[derive(Debug, Serialize)]
pub struct LargeObjectsSynced {
    /// The objects that differed, and so were copied or unlinked.
    pub differences: LargeObjectDifferences,
    pub bytes_copied: u64,
    pub seconds: f64,
}

/// Makes the target's large objects those of the source: the ones missing or
/// changed on the target copied (with their owner when that role exists on the
/// target), the ones the source no longer has unlinked, in one transaction on
/// `dst` (the caller's session: the cutover's, inside its fence, opens none).
pub async fn sync_large_objects(src: &Client, dst: &Client) -> Result<LargeObjectsSynced> {
    let started = Instant::now();
    let (a, b) = tokio::try_join!(digests(src, "source"), digests(dst, "target"))?;
    let differences = large_object_differences(&a, &b);
    if differences.is_empty() {
        return Ok(LargeObjectsSynced { differences, bytes_copied: 0, seconds: started.elapsed().as_secs_f64() });
    }
    dst.batch_execute("BEGIN")
        .await
        .map_err(|e| Error::server("starting the large objects' transaction on the target", e))?;
    match copy_differences(src, dst, &differences).await {
        Ok(bytes_copied) => {
            dst.batch_execute("COMMIT")
                .await
                .map_err(|e| Error::server("committing the large objects on the target", e))?;
            Ok(LargeObjectsSynced { differences, bytes_copied, seconds: started.elapsed().as_secs_f64() })
        }
        Err(e) => {
            // The session is the caller's: it is left outside any transaction.
            let _ = dst.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// Inside the target's open transaction: the differing objects unlinked and
/// copied; returns the bytes copied.
async fn copy_differences(src: &Client, tx: &Client, differences: &LargeObjectDifferences) -> Result<u64> {
    let fail = |doing: &str, oid: u32| {
        let doing = format!("{doing} the large object {oid} on the target");
        move |e| Error::server(&doing, e)
    };
    for oid in differences.extra.iter().chain(&differences.changed) {
        tx.execute("SELECT lo_unlink($1)", &[oid]).await.map_err(fail("unlinking", *oid))?;
    }
    let mut bytes_copied = 0;
    for &oid in differences.missing.iter().chain(&differences.changed) {
        tx.execute("SELECT lo_create($1)", &[&oid]).await.map_err(fail("creating", oid))?;
        let mut offset: i64 = 0;
        loop {
            let piece: Vec<u8> = src
                .query_one("SELECT lo_get($1, $2, $3)", &[&oid, &offset, &PIECE_BYTES])
                .await
                .map_err(|e| Error::server(&format!("reading the large object {oid} on the source"), e))?
                .get(0);
            if piece.is_empty() {
                break;
            }
            tx.execute("SELECT lo_put($1, $2, $3)", &[&oid, &offset, &piece]).await.map_err(fail("writing", oid))?;
            offset += piece.len() as i64;
            bytes_copied += piece.len() as u64;
            if piece.len() < PIECE_BYTES as usize {
                break;
            }
        }
        owned_and_granted(src, tx, oid).await?;
    }
    Ok(bytes_copied)
}
