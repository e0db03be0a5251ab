//! What a full validation compares besides tables: materialized views (whole,
//! as tables without a key; their populated state first) and large objects (one
//! digest per object on each side, see [`crate::large_objects`]).

use pgferry_core::fidelity::{large_object_differences, LargeObjectDifferences};
use pgferry_core::sql::QualifiedName;
use serde::Serialize;
use tokio_postgres::Client;

use super::{open_worker, Sides};
use crate::error::Result;
use crate::materialized_views::populated;

/// How a materialized view is validated.
pub(super) enum ViewCheck {
    /// Populated on both sides: its rows are compared.
    Rows,
    /// Unpopulated on both sides: nothing to compare.
    Nothing,
    /// Populated on one side only.
    Differs(String),
}

/// Compares a view's populated state on both sides (each read under its
/// validation snapshot).
pub(super) async fn view_check(src: &Client, dst: &Client, view: &QualifiedName) -> Result<ViewCheck> {
    Ok(match (populated(src, view).await?, populated(dst, view).await?) {
        (true, true) => ViewCheck::Rows,
        (false, false) => ViewCheck::Nothing,
        (true, false) => ViewCheck::Differs(
            "materialized view not populated on the target (pgferry refreshes it after the copy and at the cutover)"
                .into(),
        ),
        (false, true) => ViewCheck::Differs("materialized view populated on the target but not on the source".into()),
    })
}

/// The large objects compared by content.
#[derive(Debug, Serialize)]
pub struct LargeObjectsVerdict {
    pub source_objects: usize,
    pub target_objects: usize,
    pub differences: LargeObjectDifferences,
}

/// Digests every large object on both sides under the validation snapshots.
pub(super) async fn large_objects(sides: &Sides<'_>) -> Result<LargeObjectsVerdict> {
    let s = open_worker(sides.source, &sides.source_snapshot).await?;
    let t = open_worker(sides.target, &sides.target_snapshot).await?;
    let (a, b) =
        tokio::try_join!(crate::large_objects::digests(&s, "source"), crate::large_objects::digests(&t, "target"))?;
    Ok(LargeObjectsVerdict {
        source_objects: a.len(),
        target_objects: b.len(),
        differences: large_object_differences(&a, &b),
    })
}
