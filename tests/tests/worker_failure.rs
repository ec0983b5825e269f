//! Issue 15: a worker's panic never hangs an in-process run. The library path has no exit
//! hook (the binary's, tested in hostile.rs, ends the process): `run_inputs` must return a
//! `WorkerFailure` naming the stage and the event, on 1 and 4 workers, while the other
//! workers leave their loops. Its own test binary, because the test-only fault hook is set
//! through the environment, read once per process.

use markledger::runtime::{in_memory, run_inputs, RunSettings};
use markledger_connectors::codec::json::decode_event;
use markledger_tests::{default_config, payment};
use std::time::{Duration, Instant};

#[test]
fn a_worker_panic_in_process_returns_an_error_not_a_hang() {
    // The hook fails the accounts stage on event "poison"; the run must come back within a
    // minute with the failure, never hang.
    std::env::set_var("MARKLEDGER_TEST_PANIC_ON_EVENT", "poison");
    std::env::set_var("MARKLEDGER_TEST_PANIC_STAGE", "Accounts");
    let lines = [
        payment("p1", "2026-01-10T09:00:00+05:00", "KZ-A", "1.00", "Kaspi Bank"),
        payment("poison", "2026-01-10T09:01:00+05:00", "KZ-B", "1.00", "Kaspi Bank"),
        payment("p3", "2026-01-10T09:02:00+05:00", "KZ-C", "1.00", "Kaspi Bank"),
    ];
    for workers in [1, 4] {
        let decoded = vec![lines.iter().map(|line| decode_event(line.as_bytes())).collect()];
        let config = default_config();
        let started = Instant::now();
        let (done, receive) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let settings = RunSettings::files(&config, workers);
            let result = run_inputs(settings, in_memory(decoded), |_| Vec::new(), &mut |_| {});
            let _ = done.send(result.map(|_| ()));
        });
        let result = receive
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("{workers} workers: the run hung after a worker's panic"));
        let failure = result.expect_err("the injected failure");
        assert_eq!(failure.event.as_deref(), Some("poison"), "{failure}");
        assert_eq!(
            failure.stage.as_deref(),
            Some("Accounts: lifecycle, balance, FIFO"),
            "{failure}"
        );
        assert!(failure.message.contains("injected failure"), "{failure}");
        eprintln!("{workers} workers: {failure} (after {:?})", started.elapsed());
    }
}
