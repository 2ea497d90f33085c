//! The optional maintenance worker: with easymo in `shared_preload_libraries`, one background
//! worker per database named in `easymo.maintenance_databases` calls `run_maintenance()` at
//! start and then every `easymo.maintenance_interval` seconds. Without preloading nothing here
//! runs, and pg_cron (or any scheduler) can call `run_maintenance()` instead.

#![forbid(unsafe_code)]

use crate::gucs::{MAINTENANCE_DATABASES, MAINTENANCE_INTERVAL, MAINTENANCE_RESTART_INTERVAL};
use crate::postgres::backend;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::prelude::*;
use std::time::Duration;

/// When preloading, registers one worker per database named in easymo.maintenance_databases.
pub fn init() {
    if !backend::preloading() {
        return;
    }
    let restart = Duration::from_secs(MAINTENANCE_RESTART_INTERVAL.get() as u64);
    for database in databases() {
        BackgroundWorkerBuilder::new(&format!("easymo maintenance {database}"))
            .set_type("easymo maintenance")
            .set_library("easymo")
            // src/postgres/bgworker.rs, which calls main() below.
            .set_function("easymo_maintenance_worker_main")
            .set_extra(&database)
            .enable_spi_access()
            // Maintenance writes: a standby has nothing to do until it is promoted.
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(Some(restart))
            .load();
    }
}

/// The database names of `easymo.maintenance_databases`, trimmed, without empties or repeats.
fn databases() -> Vec<String> {
    let list = MAINTENANCE_DATABASES.get().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    parse_databases(&list)
}

fn parse_databases(list: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    names
}

/// The worker's life: connect, run every interval, and when terminated exit so that the
/// postmaster starts it again after the restart interval.
pub fn main() {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = BackgroundWorker::get_extra().to_owned();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    log!("easymo maintenance worker started in database \"{database}\"");

    let mut missing_reported = false;
    loop {
        let interval = MAINTENANCE_INTERVAL.get();
        if interval > 0 {
            match BackgroundWorker::transaction(run_once) {
                Some((summary, eventful)) => {
                    missing_reported = false;
                    if eventful {
                        log!("easymo maintenance in \"{database}\": {summary}");
                    } else {
                        debug1!("easymo maintenance in \"{database}\": {summary}");
                    }
                }
                None if !missing_reported => {
                    log!("easymo maintenance worker: extension easymo (0.2.0 or later) is not installed in database \"{database}\"; waiting for CREATE EXTENSION or ALTER EXTENSION easymo UPDATE");
                    missing_reported = true;
                }
                None => {}
            }
        }
        // Paused (interval 0): wake once a minute to see whether a reload changed that.
        let wait = if interval > 0 { interval as u64 } else { 60 };
        if !BackgroundWorker::wait_latch(Some(Duration::from_secs(wait))) {
            break;
        }
        if BackgroundWorker::sighup_received() {
            backend::reload_config();
        }
    }
    // Exit code 1 asks the postmaster to start the worker again after the restart interval (0
    // would unregister it until the server restarts). At server shutdown nothing is restarted.
    log!(
        "easymo maintenance worker in database \"{database}\" stopped; it starts again in {} s",
        MAINTENANCE_RESTART_INTERVAL.get()
    );
    backend::exit_for_restart();
}

/// One run_maintenance() in the extension's schema; None when the extension is not installed
/// in this database (yet), or not updated to a version that has it.
fn run_once() -> Option<(String, bool)> {
    Spi::connect_mut(|client| {
        // The schema, if the extension is installed at a version that has run_maintenance()
        // (0.2.0 on): a database still at 0.1.0 after the library was upgraded waits for its
        // ALTER EXTENSION easymo UPDATE instead of failing every interval.
        let found = client.select(
            "SELECT quote_ident(n.nspname) FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace \
              WHERE e.extname = 'easymo' \
                AND to_regprocedure(quote_ident(n.nspname) || '.run_maintenance()') IS NOT NULL",
            None,
            &[],
        )?;
        if found.is_empty() {
            return Ok(None);
        }
        let Some(schema) = found.first().get_one::<String>()? else { return Ok(None) };
        // Whether the run did anything (a count above 0, or an error): only those are logged at
        // LOG, so a short interval does not flood the server log.
        let (summary, eventful) = client
            .update(
                &format!(
                    "SELECT s::text, s -> 'errors' <> '{{}}' OR EXISTS (SELECT 1 FROM jsonb_each(s) e \
                      WHERE e.key NOT IN ('errors', 'duration_ms') AND e.value <> '0') \
                       FROM {schema}.run_maintenance() s"
                ),
                None,
                &[],
            )?
            .first()
            .get_two::<String, bool>()?;
        Ok::<_, pgrx::spi::Error>(summary.map(|s| (s, eventful.unwrap_or(true))))
    })
    .unwrap_or_else(|e| error!("easymo maintenance: {e}"))
}

#[cfg(test)]
mod tests {
    use super::parse_databases;

    #[test]
    fn database_list() {
        assert_eq!(parse_databases(""), Vec::<String>::new());
        assert_eq!(parse_databases(" app , ,reports,app"), vec!["app".to_owned(), "reports".to_owned()]);
    }
}
