//! `pgferry inventory`: read one database's inventory.

use pgferry_core::inventory::{Inventory, SchemaFilter};
use pgferry_pg::ConnSpec;

use crate::error::{Error, Result};

pub async fn inventory(db: &ConnSpec, filter: &SchemaFilter) -> Result<Inventory> {
    let mut client = pgferry_pg::connect(db).await?;
    pgferry_pg::inventory::read_inventory(&mut client, filter)
        .await
        .map_err(|e| Error::server("reading the catalog", e))
}
