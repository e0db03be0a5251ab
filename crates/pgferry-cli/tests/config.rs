//! `pgferry.toml`: the commands of one migration read their servers and name from
//! the file in the working directory (or `--config`); flags override it; a
//! misspelt key is refused before anything runs.

use std::process::{Command, Output};

use pgferry_testkit::{Cluster, PgVersion};

fn pgferry_in(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pgferry"))
        .args(args)
        .current_dir(dir)
        .env_remove("PGFERRY_SOURCE")
        .env_remove("PGFERRY_TARGET")
        .env_remove("PGFERRY_NAME")
        .output()
        .expect("run pgferry")
}

#[test]
fn commands_take_their_settings_from_the_file_and_flags_override_it() {
    let source = Cluster::start(PgVersion::V15);
    let target = Cluster::start(PgVersion::V15);
    source.create_database("app");
    target.create_database("app");
    let dir = tempfile::tempdir().unwrap();
    let file =
        format!("name = \"from_file\"\nsource = \"{}\"\ntarget = \"{}\"\n", source.url("app"), target.url("app"));
    std::fs::write(dir.path().join("pgferry.toml"), file).unwrap();

    let out = pgferry_in(dir.path(), &["status"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("migration      from_file"));
    let out = pgferry_in(dir.path(), &["status", "--name", "from_flag"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("migration      from_flag"));

    std::fs::write(dir.path().join("other.toml"), "nmae = \"typo\"\n").unwrap();
    let out = pgferry_in(dir.path(), &["--config", "other.toml", "status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown key \"nmae\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
