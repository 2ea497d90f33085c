//! Background workers: the entry points Postgres calls by name (they must be exported C
//! symbols), and handing a batch of bytes to a short-lived worker through dynamic shared memory.

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, BgWorkerStartTime, SignalWakeFlags};
use pgrx::prelude::*;

/// The maintenance worker (src/operations/worker.rs), one per database it runs in.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn easymo_maintenance_worker_main(_arg: pg_sys::Datum) {
    crate::operations::worker::main();
}

/// Starts a worker that receives `bytes` and calls `crate::stats::store_batch` with them in a
/// transaction of its own, in this backend's database. With `wait`, returns once it has
/// finished. False when that cannot happen now (a standby, no free worker slot, no segment):
/// the caller keeps what it wanted to hand over.
pub fn start_flush_worker(bytes: &[u8], wait: bool) -> bool {
    if super::backend::in_recovery() || super::backend::database() == pg_sys::Oid::INVALID {
        return false;
    }
    // SAFETY: the segment is created, filled and pinned here, detached before returning; pinned,
    // it outlives this backend until the worker (or the failure path below) unpins it.
    unsafe {
        let segment = pg_sys::dsm_create(bytes.len() + 8, pg_sys::DSM_CREATE_NULL_IF_MAXSEGMENTS as i32);
        if segment.is_null() {
            return false;
        }
        let address = pg_sys::dsm_segment_address(segment).cast::<u8>();
        address.cast::<u64>().write_unaligned(bytes.len() as u64);
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), address.add(8), bytes.len());
        pg_sys::dsm_pin_segment(segment);
        let handle = pg_sys::dsm_segment_handle(segment);
        let worker = BackgroundWorkerBuilder::new("easymo stats flush")
            .set_type("easymo stats flush")
            .set_library("easymo")
            .set_function("easymo_stats_flush_main")
            .set_argument(Some(pg_sys::Datum::from(handle)))
            .set_extra(&u32::from(pg_sys::MyDatabaseId).to_string())
            .enable_spi_access()
            .set_start_time(BgWorkerStartTime::RecoveryFinished)
            .set_restart_time(None)
            .set_notify_pid(if wait { pg_sys::MyProcPid } else { 0 })
            .load_dynamic();
        if worker.is_err() {
            pg_sys::dsm_unpin_segment(handle);
        }
        pg_sys::dsm_detach(segment);
        match worker {
            Ok(worker) if wait => worker.wait_for_shutdown().is_ok(),
            Ok(_) => true,
            Err(_) => false,
        }
    }
}

/// The flush worker: copies its batch and lets the segment go before anything can fail, then
/// stores it in one transaction. A batch for a database where easymo is gone is dropped.
#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn easymo_stats_flush_main(arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGTERM);
    let handle = arg.value() as pg_sys::dsm_handle;
    // SAFETY: the segment was pinned for this worker; copied, unpinned and detached at once.
    let bytes = unsafe {
        let segment = pg_sys::dsm_attach(handle);
        if segment.is_null() {
            return;
        }
        let address = pg_sys::dsm_segment_address(segment).cast::<u8>();
        let len = address.cast::<u64>().read_unaligned() as usize;
        let bytes = std::slice::from_raw_parts(address.add(8), len).to_vec();
        pg_sys::dsm_unpin_segment(handle);
        pg_sys::dsm_detach(segment);
        bytes
    };
    let Ok(database) = BackgroundWorker::get_extra().parse::<u32>() else { return };
    BackgroundWorker::connect_worker_to_spi_by_oid(Some(pg_sys::Oid::from(database)), None);
    BackgroundWorker::transaction(|| crate::stats::store_batch(&bytes));
}
