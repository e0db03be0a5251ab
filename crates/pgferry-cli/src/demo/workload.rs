//! The application the demo migrates under: `shop_app` writing to the source for
//! the whole demo, as a real application would while its database moves.
//!
//! Each transaction inserts a few orders (whose trigger writes audit rows into the
//! partitioned table) and updates a customer, then the application pauses briefly.
//! Only committed transactions are counted. The cutover's fence terminates its
//! session and refuses new ones, so its next write fails; it tries to connect
//! once more, then stops and says what the server answered, which is what an
//! application sees during the downtime. Afterwards it
//! connects to the target, as after the switch, and writes once more
//! ([`write_after_switch`]): the ids it gets prove that the target's sequences
//! continue the source's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pgferry::{Error, Result};
use pgferry_pg::ConnSpec;
use tokio::task::JoinHandle;
use tokio_postgres::Client;

const PAUSE: Duration = Duration::from_millis(20);

const NEW_ORDERS: &str = "
INSERT INTO shop.orders (customer_id, product_id, total, note)
SELECT 1 + (random() * ($1::bigint - 1))::bigint, 1 + (random() * 999)::int, round((random() * 100)::numeric, 2), 'live'
FROM generate_series(1, 5)";

const TOUCH_CUSTOMER: &str =
    "UPDATE shop.customers SET since = now() WHERE id = 1 + (random() * ($1::bigint - 1))::bigint";

const ONE_ORDER: &str =
    "INSERT INTO shop.orders (customer_id, product_id, total, note) VALUES (1, 1, 9.99, 'after the switch') RETURNING id";
/// The audit row's id, taken by the trigger after the insert statement.
const ITS_EVENT: &str = "SELECT currval(pg_get_serial_sequence('audit.events', 'id'))";

/// The application's write loop, running in the background.
pub(crate) struct Workload {
    committed: Arc<AtomicU64>,
    task: JoinHandle<String>,
}

/// How the application's run ended.
pub(crate) struct Stopped {
    pub(crate) committed: u64,
    /// The failure that stopped it, in the server's words.
    pub(crate) cause: String,
}

impl Workload {
    /// Starts writing as `app`, picking customers among the first `customers`.
    pub(crate) fn start(app: ConnSpec, customers: i64) -> Workload {
        let committed = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run(app, customers, Arc::clone(&committed)));
        Workload { committed, task }
    }

    pub(crate) fn committed(&self) -> u64 {
        self.committed.load(Ordering::Relaxed)
    }

    /// Waits for the loop to stop by itself (it does at the fence); stops it after
    /// `patience` otherwise.
    pub(crate) async fn stopped(mut self, patience: Duration) -> Stopped {
        let cause = match tokio::time::timeout(patience, &mut self.task).await {
            Ok(Ok(cause)) => cause,
            Ok(Err(e)) => format!("the application's task failed: {e}"),
            Err(_) => "still writing: stopped by the demo".to_string(),
        };
        Stopped { committed: self.committed(), cause }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(app: ConnSpec, customers: i64, committed: Arc<AtomicU64>) -> String {
    let mut client = match pgferry_pg::connect(&app).await {
        Ok(client) => client,
        Err(e) => return e.to_string(),
    };
    loop {
        if let Err(e) = one_transaction(&mut client, customers).await {
            let failed = match e.as_db_error() {
                Some(db) => db.message().to_string(),
                None if e.is_closed() => "its session was ended".to_string(),
                None => e.to_string(),
            };
            // As an application would: try again once, and report what the server says.
            return match pgferry_pg::connect(&app).await {
                Err(refused) => format!("{failed}; a new connection was refused ({})", refused.cause),
                Ok(_) => format!("{failed}; a new connection was accepted"),
            };
        }
        committed.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(PAUSE).await;
    }
}

async fn one_transaction(client: &mut Client, customers: i64) -> Result<(), tokio_postgres::Error> {
    let tx = client.transaction().await?;
    tx.execute(NEW_ORDERS, &[&customers]).await?;
    tx.execute(TOUCH_CUSTOMER, &[&customers]).await?;
    tx.commit().await
}

/// The ids one new order got: its own and its audit row's.
pub(crate) struct NewIds {
    pub(crate) order: i64,
    pub(crate) event: i64,
}

/// One order written by the application, connected as `app`.
pub(crate) async fn write_after_switch(app: &ConnSpec) -> Result<NewIds> {
    let client = pgferry_pg::connect(app).await?;
    let fail = |e| Error::server("writing an order through the application on the target", e);
    let order = client.query_one(ONE_ORDER, &[]).await.map_err(fail)?.get(0);
    let event = client.query_one(ITS_EVENT, &[]).await.map_err(fail)?.get(0);
    Ok(NewIds { order, event })
}

/// The highest ids on a side (read as the superuser: the fenced source is still readable).
pub(crate) async fn last_ids(client: &Client) -> Result<NewIds> {
    let row = client
        .query_one("SELECT (SELECT max(id) FROM shop.orders), (SELECT max(id) FROM audit.events)", &[])
        .await
        .map_err(|e| Error::server("reading the source's last ids", e))?;
    Ok(NewIds { order: row.get(0), event: row.get(1) })
}
