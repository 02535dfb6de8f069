//! How a figure is measured: CPU time of the thread (or process) over
//! rounds, the median per operation.

use super::*;

/// One measured figure.
pub(super) struct Figure {
    pub(super) name: &'static str,
    pub(super) unit: &'static str,
    pub(super) cpu_us: f64,
    pub(super) wall_us: f64,
}

/// CPU time of `clock` (a thread's or the process's) in nanoseconds.
pub(super) fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec that we own.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub(super) fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

pub(super) fn process_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_PROCESS_CPUTIME_ID)
}

pub(super) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// What one round measured: operations, CPU and wall nanoseconds.
pub(super) struct Sample {
    pub(super) ops: u64,
    pub(super) cpu_ns: u64,
    pub(super) wall_ns: u64,
}

/// Measures `f`, which does and returns a number of operations.
pub(super) fn sample(f: impl FnOnce() -> u64) -> Sample {
    let (c0, w0) = (thread_cpu_ns(), StdInstant::now());
    let ops = f();
    Sample {
        ops,
        cpu_ns: thread_cpu_ns() - c0,
        wall_ns: w0.elapsed().as_nanos() as u64,
    }
}

/// Runs `round` `rounds` times after one warm-up round; median CPU and wall
/// microseconds per operation.
pub(super) fn measure_rounds(
    name: &'static str,
    unit: &'static str,
    rounds: usize,
    mut round: impl FnMut() -> Sample,
) -> Figure {
    round();
    let (mut cpu, mut wall) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let s = round();
        let ops = s.ops.max(1) as f64;
        cpu.push(s.cpu_ns as f64 / ops / 1000.0);
        wall.push(s.wall_ns as f64 / ops / 1000.0);
    }
    Figure {
        name,
        unit,
        cpu_us: median(cpu),
        wall_us: median(wall),
    }
}

/// [`measure_rounds`] where the whole round is measured; `round` returns its operations.
pub(super) fn measure(
    name: &'static str,
    unit: &'static str,
    rounds: usize,
    mut round: impl FnMut() -> u64,
) -> Figure {
    measure_rounds(name, unit, rounds, || sample(&mut round))
}

/// Like [`measure()`] for async work on a current-thread runtime (all of it
/// runs on this thread, so the thread's CPU time covers it).
pub(super) fn measure_async<F, Fut>(
    rt: &tokio::runtime::Runtime,
    name: &'static str,
    unit: &'static str,
    rounds: usize,
    mut round: F,
) -> Figure
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    measure(name, unit, rounds, || rt.block_on(round()))
}
