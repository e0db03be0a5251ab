//! The application's settings that pgferry's sessions lift (#18: probed before
//! `pg_settings` is read), against a real server: what the database or the
//! role sets is lifted, what the connection's own URL asks for is kept.

use pgferry_pg::{connect, connect_as_application, ConnSpec};
use pgferry_testkit::{Cluster, PgVersion};

const SHOWN: &str = "SELECT current_setting('idle_session_timeout') || ',' || current_setting('transaction_timeout')
    || ',' || current_setting('default_transaction_read_only')";

async fn shown(spec: &ConnSpec, as_application: bool) -> String {
    let client = match as_application {
        true => connect_as_application(spec).await,
        false => connect(spec).await,
    }
    .unwrap_or_else(|e| panic!("{e}"));
    client.query_one(SHOWN, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn the_databases_and_roles_limits_are_lifted_and_the_urls_own_options_win() {
    let cluster = Cluster::start(PgVersion::V18);
    cluster.create_database("app");
    let url = cluster.url("app");
    let plain = ConnSpec::parse(&url).unwrap();
    assert_eq!(shown(&plain, false).await, "0,0,off", "nothing set: nothing to lift");
    cluster.psql(
        "app",
        "ALTER DATABASE app SET idle_session_timeout = '1s';
         ALTER DATABASE app SET default_transaction_read_only = on;
         ALTER ROLE postgres IN DATABASE app SET transaction_timeout = '2s'",
    );
    assert_eq!(shown(&plain, false).await, "0,0,off", "pgferry's own session");
    assert_eq!(shown(&plain, true).await, "0,0,on", "as the application's: read-only kept");
    let client = connect(&plain).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(client.query_one("SELECT 1", &[]).await.unwrap().get::<_, i32>(0), 1, "not ended when idle");
    let own = ConnSpec::parse(&format!(
        "{url}&options=-c%20idle_session_timeout%3D5min%20-c%20transaction_timeout%3D7min%20-c%20default_transaction_read_only%3Don"
    ))
    .unwrap();
    assert_eq!(shown(&own, false).await, "5min,7min,on", "the URL's own options win");
}
