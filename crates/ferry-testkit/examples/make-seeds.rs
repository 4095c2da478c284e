//! Writes one fixture dump per flavor into a directory, e.g. the fuzz seeds:
//!
//! ```text
//! cargo run -p ferry-testkit --example make-seeds -- crates/ferry-rdb/fuzz/seeds
//! ```
//!
//! Files: `redis70.rdb`, `redis62.rdb`, `redis-stack74.rdb`, `valkey9.rdb`
//! (see `Flavor::slug`). Each holds the full fixture (dbs 0, 1, 5) with the
//! Redis Stack modules loaded wherever they load (all but Redis 6.2; Redis
//! Stack also gets RediSearch and RedisTimeSeries, hence MODULE_AUX records).
//! The dumps differ from run to run in timestamps and `*` stream ids.

use std::path::PathBuf;
use std::process::ExitCode;

use ferry_testkit::{Flavor, Server, fixtures, rdb_scan};

fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: make-seeds <output-dir>");
        return ExitCode::from(2);
    };
    if let Err(e) = std::fs::create_dir_all(&out) {
        eprintln!("cannot create {}: {e}", out.display());
        return ExitCode::FAILURE;
    }
    for &flavor in Flavor::all() {
        match make(flavor, &out) {
            Ok(line) => println!("{line}"),
            Err(e) => {
                eprintln!("{flavor}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn make(flavor: Flavor, out: &std::path::Path) -> Result<String, Box<dyn std::error::Error>> {
    let modules = flavor.supports_stack_modules();
    let server = Server::builder(flavor)
        .modules(modules)
        .all_stack_modules(flavor == Flavor::RedisStack74)
        .start()?;
    let info = fixtures::populate(&mut server.conn(), flavor)?;
    let rdb = server.dump_rdb()?;
    let scan = rdb_scan::scan(&rdb)?;
    let path = out.join(format!("{}.rdb", flavor.slug()));
    std::fs::write(&path, &rdb)?;
    Ok(format!(
        "{}: {} bytes, {} keys in dbs {:?}, type bytes {:?}, {} function(s), {} module aux, modules {:?}",
        path.display(),
        rdb.len(),
        info.keys,
        info.dbs,
        scan.type_bytes(),
        scan.functions.len(),
        scan.module_aux,
        info.modules
    ))
}
